package pvesim

import (
	"crypto/sha1"
	"fmt"
	"strings"
	"testing"
)

// The expected texts are written from reference §7.2, not produced by the
// code under test.

const want8101User = `#cloud-config
hostname: web01
manage_etc_hosts: true
fqdn: web01.example.com
user: admin
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuTestKey me@laptop
chpasswd:
  expire: False
users:
  - default
package_upgrade: true
`

const want8101Network = `version: 1
config:
    - type: physical
      name: eth0
      mac_address: 'bc:24:11:12:34:56'
      subnets:
      - type: static
        address: '10.0.10.123'
        netmask: '255.255.255.0'
        gateway: '10.0.10.1'
    - type: nameserver
      address:
      - '1.1.1.1'
      search:
      - 'example.com'
`

func TestCloudinitDump8101(t *testing.T) {
	h := newHarness(t).withVMs()
	meta := fmt.Sprintf("instance-id: %x\n", sha1.Sum([]byte(want8101User+want8101Network)))
	for typ, want := range map[string]string{"user": want8101User, "network": want8101Network, "meta": meta} {
		r := h.run("", "qm", "cloudinit", "dump", "8101", typ)
		// qm prints the data plus one more newline.
		if r.code != 0 || r.stderr != "" || r.stdout != want+"\n" {
			t.Errorf("dump %s: exit %d stderr %q\n got:\n%s\nwant:\n%s", typ, r.code, r.stderr, r.stdout, want+"\n")
		}
	}
	r := h.run("", "qm", "cloudinit", "dump", "8101", "vendor")
	if r.code == 0 || !strings.Contains(r.stderr, "type: value 'vendor' does not have a value in the enumeration 'user, network, meta'") {
		t.Errorf("dump vendor: %+v", r)
	}
}

func TestCloudinitRules(t *testing.T) {
	tests := []struct {
		name     string
		conf     string
		resolv   string
		typ      string
		want     string
		contains bool // want is a fragment
	}{
		{name: "dotted name is the fqdn", typ: "user", contains: true,
			conf: "name: web01.example.org\nsearchdomain: example.com\n",
			want: "hostname: web01\nmanage_etc_hosts: true\nfqdn: web01.example.org\n"},
		{name: "no name, no searchdomain", typ: "user", contains: true,
			conf: "memory: 512\n", want: "hostname: VM100\nmanage_etc_hosts: true\nfqdn: VM100\nchpasswd:"},
		{name: "root user, no upgrade, password", typ: "user",
			conf: "ciuser: root\ncipassword: $5$salt$hash\nciupgrade: 0\nname: db\n",
			want: "#cloud-config\nhostname: db\nmanage_etc_hosts: true\nfqdn: db\nuser: root\ndisable_root: False\npassword: $5$salt$hash\nchpasswd:\n  expire: False\n"},
		{name: "blank key lines dropped", typ: "user", contains: true,
			conf: "name: a\nsshkeys: %0Assh-ed25519%20AAAA%20a%40b%0A%20%0Assh-rsa%20BBBB%20c%40d\n",
			want: "ssh_authorized_keys:\n  - ssh-ed25519 AAAA a@b\n  - ssh-rsa BBBB c@d\nchpasswd:"},
		{name: "dhcp and IPv6 kinds; interfaces without ipconfig skipped; host DNS", typ: "network",
			conf:   "net0: virtio=BC:24:11:00:00:01,bridge=vmbr0\nipconfig0: ip=dhcp,ip6=auto\nnet1: virtio=BC:24:11:00:00:02\nnet2: e1000=BC:24:11:00:00:03\nipconfig2: ip6=2001:db8::5/64,gw6=2001:db8::1\nnet3: virtio=BC:24:11:00:00:04\nipconfig3: ip6=dhcp\n",
			resolv: "search lab.local\nnameserver 10.0.0.53\nnameserver 10.0.0.54\n",
			want: `version: 1
config:
    - type: physical
      name: eth0
      mac_address: 'bc:24:11:00:00:01'
      subnets:
      - type: dhcp4
      - type: ipv6_slaac
    - type: physical
      name: eth2
      mac_address: 'bc:24:11:00:00:03'
      subnets:
      - type: static6
        address: '2001:db8::5/64'
        gateway: '2001:db8::1'
    - type: physical
      name: eth3
      mac_address: 'bc:24:11:00:00:04'
      subnets:
      - type: dhcp6
    - type: nameserver
      address:
      - '10.0.0.53'
      - '10.0.0.54'
      search:
      - 'lab.local'
`},
		{name: "no DNS anywhere: bare nameserver entry", typ: "network",
			conf: "net0: virtio=BC:24:11:00:00:01\nipconfig0: ip=192.168.1.10/16\n",
			want: "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: 'bc:24:11:00:00:01'\n      subnets:\n" +
				"      - type: static\n        address: '192.168.1.10'\n        netmask: '255.255.0.0'\n    - type: nameserver\n"},
		{name: "configdrive2 network", typ: "network",
			conf: "citype: configdrive2\nnet0: virtio=BC:24:11:00:00:01\nipconfig0: ip=10.1.2.3/24,gw=10.1.2.1\nnameserver: 1.1.1.1 8.8.8.8\nsearchdomain: example.com\n",
			want: "auto lo\niface lo inet loopback\n\n        dns_nameservers 1.1.1.1 8.8.8.8\n        dns_search example.com\nauto eth0\n" +
				"iface eth0 inet static\n        address 10.1.2.3\n        netmask 255.255.255.0\n        gateway 10.1.2.1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.write("etc/pve/qemu-server/100.conf", tt.conf)
			if tt.resolv != "" {
				h.write("etc/resolv.conf", tt.resolv)
			}
			r := h.run("", "qm", "cloudinit", "dump", "100", tt.typ)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got := strings.TrimSuffix(r.stdout, "\n")
			if tt.contains && !strings.Contains(got, tt.want) || !tt.contains && got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestConfigdrive2Meta(t *testing.T) {
	h := newHarness(t)
	h.write("etc/pve/qemu-server/100.conf", "citype: configdrive2\nname: w\n")
	user := h.run("", "qm", "cloudinit", "dump", "100", "user").stdout
	network := h.run("", "qm", "cloudinit", "dump", "100", "network").stdout
	id := fmt.Sprintf("%x", sha1.Sum([]byte(strings.TrimSuffix(user, "\n")+strings.TrimSuffix(network, "\n"))))
	want := "{\n     \"uuid\": \"" + id + "\",\n     \"network_config\": { \"content_path\": \"/content/0000\" }\n}\n\n"
	if got := h.run("", "qm", "cloudinit", "dump", "100", "meta").stdout; got != want {
		t.Errorf("meta:\n%s\nwant:\n%s", got, want)
	}
}
