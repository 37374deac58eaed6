package pvesim

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Cloud-init data as qemu-server's Cloudinit.pm generates it.

// hostnameFQDN is get_hostname_fqdn.
func hostnameFQDN(conf map[string]string, vmid int) (hostname, fqdn string) {
	hostname = conf["name"]
	if hostname == "" {
		hostname = fmt.Sprintf("VM%d", vmid)
	}
	if first, _, ok := strings.Cut(hostname, "."); ok {
		return first, hostname
	}
	if search := conf["searchdomain"]; search != "" {
		return hostname, hostname + "." + search
	}
	return hostname, hostname
}

func citype(conf map[string]string) string {
	if t := conf["citype"]; t != "" {
		return t
	}
	if strings.HasPrefix(conf["ostype"], "w") {
		return "configdrive2"
	}
	return "nocloud"
}

// userData is cloudinit_userdata.
func userData(conf map[string]string, vmid int) string {
	hostname, fqdn := hostnameFQDN(conf, vmid)
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	fmt.Fprintf(&b, "hostname: %s\n", hostname)
	b.WriteString("manage_etc_hosts: true\n")
	fmt.Fprintf(&b, "fqdn: %s\n", fqdn)
	user, hasUser := conf["ciuser"]
	if hasUser {
		fmt.Fprintf(&b, "user: %s\n", user)
		if user == "root" {
			b.WriteString("disable_root: False\n")
		}
	}
	if pw, ok := conf["cipassword"]; ok {
		fmt.Fprintf(&b, "password: %s\n", pw)
	}
	if keys, ok := conf["sshkeys"]; ok {
		b.WriteString("ssh_authorized_keys:\n")
		decoded, err := url.PathUnescape(keys)
		if err != nil {
			decoded = keys
		}
		for _, k := range strings.Split(decoded, "\n") {
			if strings.TrimSpace(k) == "" {
				continue
			}
			fmt.Fprintf(&b, "  - %s\n", k)
		}
	}
	b.WriteString("chpasswd:\n  expire: False\n")
	if !hasUser || user != "root" {
		b.WriteString("users:\n  - default\n")
	}
	if v, ok := conf["ciupgrade"]; !ok || v == "1" {
		b.WriteString("package_upgrade: true\n")
	}
	return b.String()
}

// ipconfig is one parsed ipconfigN.
type ipconfig struct{ ip, gw, ip6, gw6 string }

func parseIPConfig(v string) ipconfig {
	ps := parsePropString(v, "ip")
	return ipconfig{ip: ps.get("ip"), gw: ps.get("gw"), ip6: ps.get("ip6"), gw6: ps.get("gw6")}
}

// splitIP4 turns "10.0.10.123/24" into address and dotted netmask.
func splitIP4(cidr string) (string, string) {
	addr, bits, _ := strings.Cut(cidr, "/")
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > 32 {
		return addr, ""
	}
	return addr, net.IP(net.CIDRMask(n, 32)).String()
}

// dnsConf is get_dns_conf: the VM's values, else the node's resolv.conf.
func (s *Sim) dnsConf(conf map[string]string) (search, servers []string) {
	var hostSearch string
	var hostDNS []string
	if f, err := os.Open(s.path("etc/resolv.conf")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			switch fields[0] {
			case "search", "domain":
				hostSearch = strings.Join(fields[1:], " ")
			case "nameserver":
				if len(hostDNS) < 3 {
					hostDNS = append(hostDNS, fields[1])
				}
			}
		}
		f.Close()
	}
	if v, ok := conf["searchdomain"]; ok {
		search = strings.Fields(v)
	} else {
		search = strings.Fields(hostSearch)
	}
	if v, ok := conf["nameserver"]; ok {
		servers = strings.Fields(v)
	} else {
		servers = hostDNS
	}
	return search, servers
}

// networkNoCloud is nocloud_network (format v1).
func (s *Sim) networkNoCloud(conf map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("version: 1\nconfig:\n")
	for _, key := range netKeys(conf) {
		id := strings.TrimPrefix(key, "net")
		ipc, ok := conf["ipconfig"+id]
		if !ok || ipc == "" {
			continue
		}
		mac := strings.ToLower(netMAC(conf[key]))
		if mac == "" {
			return "", fmt.Errorf("network interface '%s' has no mac address", key)
		}
		ic := parseIPConfig(ipc)
		i := "    "
		fmt.Fprintf(&b, "%s- type: physical\n%s  name: eth%s\n%s  mac_address: '%s'\n%s  subnets:\n", i, i, id, i, mac, i)
		i += "  "
		if ic.ip != "" {
			if ic.ip == "dhcp" {
				fmt.Fprintf(&b, "%s- type: dhcp4\n", i)
			} else {
				addr, mask := splitIP4(ic.ip)
				fmt.Fprintf(&b, "%s- type: static\n%s  address: '%s'\n%s  netmask: '%s'\n", i, i, addr, i, mask)
				if ic.gw != "" {
					fmt.Fprintf(&b, "%s  gateway: '%s'\n", i, ic.gw)
				}
			}
		}
		if ic.ip6 != "" {
			switch ic.ip6 {
			case "dhcp":
				fmt.Fprintf(&b, "%s- type: dhcp6\n", i)
			case "auto":
				fmt.Fprintf(&b, "%s- type: ipv6_slaac\n", i)
			default:
				fmt.Fprintf(&b, "%s- type: static6\n%s  address: '%s'\n", i, i, ic.ip6)
				if ic.gw6 != "" {
					fmt.Fprintf(&b, "%s  gateway: '%s'\n", i, ic.gw6)
				}
			}
		}
	}
	search, servers := s.dnsConf(conf)
	i := "    "
	fmt.Fprintf(&b, "%s- type: nameserver\n", i)
	if len(servers) > 0 {
		fmt.Fprintf(&b, "%s  address:\n", i)
		for _, ns := range servers {
			fmt.Fprintf(&b, "%s  - '%s'\n", i, ns)
		}
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "%s  search:\n", i)
		for _, d := range search {
			fmt.Fprintf(&b, "%s  - '%s'\n", i, d)
		}
	}
	return b.String(), nil
}

// networkConfigDrive2 is configdrive2_network (Debian interfaces syntax).
func (s *Sim) networkConfigDrive2(conf map[string]string) string {
	var b strings.Builder
	b.WriteString("auto lo\niface lo inet loopback\n\n")
	search, servers := s.dnsConf(conf)
	if len(servers) > 0 {
		fmt.Fprintf(&b, "        dns_nameservers %s\n", strings.Join(servers, " "))
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "        dns_search %s\n", strings.Join(search, " "))
	}
	for _, key := range netKeys(conf) {
		id := strings.TrimPrefix(key, "net")
		ipc := conf["ipconfig"+id]
		if ipc == "" {
			continue
		}
		ic := parseIPConfig(ipc)
		eth := "eth" + id
		fmt.Fprintf(&b, "auto %s\n", eth)
		if ic.ip != "" {
			if ic.ip == "dhcp" {
				fmt.Fprintf(&b, "iface %s inet dhcp\n", eth)
			} else {
				addr, mask := splitIP4(ic.ip)
				fmt.Fprintf(&b, "iface %s inet static\n        address %s\n        netmask %s\n", eth, addr, mask)
				if ic.gw != "" {
					fmt.Fprintf(&b, "        gateway %s\n", ic.gw)
				}
			}
		}
		if ic.ip6 != "" {
			if ic.ip6 == "auto" || ic.ip6 == "dhcp" {
				fmt.Fprintf(&b, "iface %s inet6 %s\n", eth, ic.ip6)
			} else {
				addr, mask, _ := strings.Cut(ic.ip6, "/")
				fmt.Fprintf(&b, "iface %s inet6 static\n        address %s\n        netmask %s\n", eth, addr, mask)
				if ic.gw6 != "" {
					fmt.Fprintf(&b, "        gateway %s\n", ic.gw6)
				}
			}
		}
	}
	return b.String()
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// cloudinitDump is dump_cloudinit_config: generated data only, cicustom
// ignored.
func (s *Sim) cloudinitDump(conf map[string]string, vmid int, typ string) (string, error) {
	user := userData(conf, vmid)
	if typ == "user" {
		return user, nil
	}
	var network string
	nocloud := citype(conf) == "nocloud"
	if nocloud {
		var err error
		if network, err = s.networkNoCloud(conf); err != nil {
			return "", err
		}
	} else {
		network = s.networkConfigDrive2(conf)
	}
	if typ == "network" {
		return network, nil
	}
	if nocloud {
		return "instance-id: " + sha1Hex(user+network) + "\n", nil
	}
	return fmt.Sprintf("{\n     \"uuid\": \"%s\",\n     \"network_config\": { \"content_path\": \"/content/0000\" }\n}\n", sha1Hex(user+network)), nil
}

const (
	snippetMax = 1 << 20
	seedMax    = 3 << 20
)

// snippet reads a cicustom volume: "<storage>:snippets/<file>".
func (s *Sim) snippet(volid string) (string, error) {
	storage, name, ok := strings.Cut(volid, ":")
	file, isSnippet := strings.CutPrefix(name, "snippets/")
	if !ok || !isSnippet || strings.Contains(file, "/") {
		return "", fmt.Errorf("%s is not in the snippets directory", volid)
	}
	path := filepath.Join(s.storagePath(storage), "snippets", file)
	st, err := os.Stat(s.path(path))
	if err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("can't find file '%s'", volid)
	}
	if st.Size() > snippetMax {
		return "", fmt.Errorf("file '%s' too long - aborting", path)
	}
	raw, err := os.ReadFile(s.path(path))
	if err != nil {
		return "", fmt.Errorf("can't read file '%s' - %w", path, err)
	}
	return string(raw), nil
}

// seed is the NoCloud data of one VM start.
type seed struct{ user, network, meta, vendor string }

// renderSeed is generate_nocloud: custom snippets replace the generated
// parts; meta-data's instance-id is the SHA-1 of user + network data.
func (s *Sim) renderSeed(conf map[string]string, vmid int) (*seed, error) {
	custom := parsePropString(conf["cicustom"], "")
	var sd seed
	read := func(kind string, dst *string) error {
		volid := custom.get(kind)
		if volid == "" {
			return nil
		}
		v, err := s.snippet(volid)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
	for _, p := range []struct {
		kind string
		dst  *string
	}{{"network", &sd.network}, {"user", &sd.user}, {"meta", &sd.meta}, {"vendor", &sd.vendor}} {
		if err := read(p.kind, p.dst); err != nil {
			return nil, err
		}
	}
	if custom.get("user") == "" {
		sd.user = userData(conf, vmid)
	}
	if custom.get("network") == "" {
		// The rig's guests read NoCloud whatever citype says.
		n, err := s.networkNoCloud(conf)
		if err != nil {
			return nil, err
		}
		sd.network = n
	}
	if custom.get("meta") == "" {
		sd.meta = "instance-id: " + sha1Hex(sd.user+sd.network) + "\n"
	}
	if len(sd.user)+len(sd.network)+len(sd.meta)+len(sd.vendor) > seedMax {
		return nil, errors.New("Cloud-Init sum of snippets too big (> 3 MiB)")
	}
	return &sd, nil
}

// seedDir is where the seed of a VM is rendered on the node.
func (s *Sim) seedDir(vmid int) string {
	return s.path("rig/seed", strconv.Itoa(vmid))
}

// writeSeed replaces the VM's seed files.
func (s *Sim) writeSeed(vmid int, sd *seed) error {
	dir := s.seedDir(vmid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range map[string]string{
		"user-data": sd.user, "network-config": sd.network, "meta-data": sd.meta, "vendor-data": sd.vendor,
	} {
		if err := writeFileAtomic(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// clearSeed empties the seed of a VM without a cloud-init drive, so its
// guest finds no datasource, as on Proxmox.
func (s *Sim) clearSeed(vmid int) error {
	dir := s.seedDir(vmid)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}
