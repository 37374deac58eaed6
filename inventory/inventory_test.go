package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeInventory writes inventory.yml (and an ssh_config when given) to a
// temp dir and returns both paths.
func writeInventory(t *testing.T, doc, sshConfig string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.yml")
	if err := os.WriteFile(inv, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ssh := filepath.Join(dir, "ssh_config") // absent unless given
	if sshConfig != "" {
		if err := os.WriteFile(ssh, []byte(sshConfig), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return inv, ssh
}

func TestLoadInventoryTestdata(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	inv, err := LoadInventory("testdata/inventory.yml", "testdata/ssh_config")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	pve1 := inv.Nodes["pve1"]
	want1 := Node{Name: "pve1", Address: "192.168.1.10", Port: 22, User: "root", IdentityFile: filepath.Join(dir, "keys/pve1_ed25519"), PVENode: "pve1", NFSServer: "10.0.0.2"}
	if pve1 == nil || *pve1 != want1 {
		t.Errorf("pve1 = %+v\nwant   %+v", pve1, want1)
	}
	pve2 := inv.Nodes["pve2"]
	if pve2 == nil {
		t.Fatal("no pve2")
	}
	// Everything but the alias and the jump comes from ssh_config.
	if pve2.Address != "192.168.1.20" || pve2.User != "admin" || pve2.Port != 2222 || pve2.IdentityFile != filepath.Join(home, ".ssh/lab_lab-pve2") {
		t.Errorf("pve2 not resolved through ssh_config: %+v", pve2)
	}
	if pve2.PVENode != "localhost" || pve2.NFSServer != "192.168.1.20" {
		t.Errorf("pve2 defaults: pve_node %q nfs_server %q", pve2.PVENode, pve2.NFSServer)
	}
	if pve2.Jump == nil || pve2.Jump.Name != "pve1" || pve2.Jump.Address != "192.168.1.10" || pve2.Jump.Jump != nil {
		t.Errorf("pve2 jump = %+v", pve2.Jump)
	}
	homeOf := func(vmid int) *Node {
		n, err := inv.Home(nil, &VM{VMID: vmid})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if inv.DefaultNode != "pve1" || homeOf(8102) != pve2 || homeOf(8101) != pve1 {
		t.Errorf("default %q, 8102 on %v, 8101 on %v", inv.DefaultNode, homeOf(8102), homeOf(8101))
	}
	wantGuest := GuestAccess{User: "phoenix", IdentityFile: filepath.Join(home, ".ssh/id_ed25519"), Via: "direct", Port: 22}
	if inv.Guest != wantGuest {
		t.Errorf("guest = %+v, want %+v", inv.Guest, wantGuest)
	}
	if inv.KnownHosts != filepath.Join(home, ".ssh/known_hosts") || inv.GuestKnownHosts != filepath.Join(home, ".config/phoenix/guest_known_hosts") {
		t.Errorf("known hosts %q, guest %q", inv.KnownHosts, inv.GuestKnownHosts)
	}
}

func TestLoadInventorySSHConfig(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	sshConfig := `
Host bastion
    HostName bastion.example.net
    User jumper
    Port 2200

Host pve-*
    HostName %h.lab.example.net
    User ops
    IdentityFile keys/lab
    ProxyJump bastion

Host pve-b
    Port 2022
`
	doc := `
nodes:
  a:
    address: pve-a
    user: root
  b:
    address: pve-b
    port: 23
    proxy_jump: other@10.9.9.9:2201,bastion
  c: {}
default_node: a
`
	invPath, sshPath := writeInventory(t, doc, sshConfig)
	inv, err := LoadInventory(invPath, sshPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(sshPath)
	a, b, c := inv.Nodes["a"], inv.Nodes["b"], inv.Nodes["c"]
	// The inventory wins (user root), ssh_config fills the rest.
	if a.Address != "pve-a.lab.example.net" || a.User != "root" || a.Port != 22 || a.IdentityFile != filepath.Join(dir, "keys/lab") || a.ProxyJump != "bastion" {
		t.Errorf("a = %+v", a)
	}
	if a.Jump == nil || a.Jump.Address != "bastion.example.net" || a.Jump.User != "jumper" || a.Jump.Port != 2200 || a.Jump.Jump != nil {
		t.Errorf("a.Jump = %+v", a.Jump)
	}
	// First Host match wins per key (pve-* sets no Port, pve-b does), the
	// inventory port beats both.
	if b.Port != 23 || b.User != "ops" {
		t.Errorf("b = %+v", b)
	}
	// b goes through 10.9.9.9 first, then bastion: the last hop is bastion,
	// reached through the first.
	if j := b.Jump; j == nil || j.Address != "bastion.example.net" || j.Jump == nil || j.Jump.Address != "10.9.9.9" || j.Jump.User != "other" || j.Jump.Port != 2201 {
		t.Errorf("b.Jump chain = %+v then %+v", b.Jump, b.Jump.Jump)
	}
	// No address: the node name is the alias; nothing matches it.
	if c.Address != "c" || c.User != "root" || c.Port != 22 || c.Jump != nil || c.PVENode != "localhost" {
		t.Errorf("c = %+v", c)
	}
}

func TestLoadInventoryNoSSHConfig(t *testing.T) {
	invPath, sshPath := writeInventory(t, "nodes:\n  pve:\n    address: 10.0.0.2\n", "")
	inv, err := LoadInventory(invPath, sshPath)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := inv.Home(nil, &VM{VMID: 8101}); n == nil || n.Address != "10.0.0.2" || n.Port != 22 || n.User != "root" || inv.DefaultNode != "pve" {
		t.Errorf("node = %+v, default %q", n, inv.DefaultNode)
	}
	if inv.Guest.Via != "direct" || inv.Guest.Port != 22 {
		t.Errorf("guest defaults = %+v", inv.Guest)
	}
}

func TestLoadInventoryNFSServerIPv6(t *testing.T) {
	invPath, sshPath := writeInventory(t, "nodes:\n  pve:\n    address: fd00::2\n  pve6:\n    nfs_server: \"[FD00::3]\"\ndefault_node: pve\n", "")
	inv, err := LoadInventory(invPath, sshPath)
	if err != nil {
		t.Fatal(err)
	}
	// As fstab wants it before ":/export".
	if got := inv.Nodes["pve"].NFSServer; got != "[fd00::2]" {
		t.Errorf("nfs_server from the address = %q, want [fd00::2]", got)
	}
	if got := inv.Nodes["pve6"].NFSServer; got != "[fd00::3]" {
		t.Errorf("nfs_server = %q, want [fd00::3]", got)
	}
}

func TestLoadInventoryErrors(t *testing.T) {
	tests := []struct {
		name, doc, ssh string
		want           string // "line:col: pointer: message" part of Error()
	}{
		{"unknown key", "nodes:\n  pve:\n    adress: 10.0.0.2\n", "", `:3:5: unknown field "adress"`},
		{"unknown top key", "nodes:\n  pve: {}\nguests: {}\n", "", `:3:1: unknown field "guests"`},
		{"syntax", "nodes:\n  pve: [\n", "", ":2:"},
		{"port type", "nodes:\n  pve:\n    port: twenty\n", "", ":3:11:"},
		{"no nodes", "default_node: pve\n", "", ":1:1: /nodes: at least one Proxmox node is required"},
		{"empty nodes", "nodes: {}\n", "", ":1:1: /nodes: at least one Proxmox node is required"},
		{"unknown default node", "nodes:\n  pve: {}\ndefault_node: pve9\n", "", `:3:15: /default_node: unknown node "pve9" (nodes: pve)`},
		{"default node needed", "nodes:\n  a: {}\n  b: {}\n", "", ":1:1: /default_node: is required with more than one node (nodes: a, b)"},
		{"unknown vm node", "nodes:\n  pve: {}\nvms:\n  8101: pve\n  8102: pve2\n", "", `:5:9: /vms/8102: unknown node "pve2" (nodes: pve)`},
		{"bad vmid key", "nodes:\n  pve: {}\nvms:\n  12: pve\n", "", ":4:7: /vms/12: vmid must be between 100 and 999999999"},
		{"bad via", "nodes:\n  pve: {}\nguest:\n  via: tunnel\n", "", `:4:8: /guest/via: must be direct, jump or address, not "tunnel"`},
		{"bad node port", "nodes:\n  pve:\n    port: 70000\n", "", ":3:11: /nodes/pve/port: must be a port between 1 and 65535"},
		{"bad guest port", "nodes:\n  pve: {}\nguest:\n  port: -1\n", "", ":4:9: /guest/port: must be a port between 1 and 65535"},
		{"jump cycle", "nodes:\n  a:\n    proxy_jump: b\n  b:\n    proxy_jump: a\ndefault_node: a\n", "", ":3:17: /nodes/a/proxy_jump: proxy jump: cycle: a -> b -> a"},
		{"jump bad port", "nodes:\n  a:\n    proxy_jump: user@host:99999\n", "", `:3:17: /nodes/a/proxy_jump: proxy jump: hop "user@host:99999": "99999" is not a port`},
		{"node user option", "nodes:\n  pve:\n    user: -oProxyCommand=x\n", "", `:3:11: /nodes/pve/user: must be a Linux user name`},
		{"guest user option", "nodes:\n  pve: {}\nguest:\n  user: -oProxyCommand=x\n", "", `:4:9: /guest/user: must be a Linux user name`},
		{"guest address option", "nodes:\n  pve: {}\nguest:\n  address: -oProxyCommand=x\n", "", `:4:12: /guest/address: must be a host name or an IP address`},
		{"newline in address", "nodes:\n  pve:\n    address: \"10.0.0.2\\nx\"\n", "", `:3:14: /nodes/pve/address: contains a control character (newline`},
		{"NUL in pve_node", "nodes:\n  pve:\n    pve_node: \"pve\\0\"\n", "", `:3:15: /nodes/pve/pve_node: contains a control character (NUL`},
		{"bad pve_node", "nodes:\n  pve:\n    pve_node: ../cluster\n", "", `:3:15: /nodes/pve/pve_node: must be a Proxmox node name`},
		{"bad nfs_server", "nodes:\n  pve:\n    nfs_server: -o x\n", "", `:3:17: /nodes/pve/nfs_server: must be a host name or an IP address`},
		{"newline in known_hosts", "nodes:\n  pve: {}\nknown_hosts: \"/k\\n\"\n", "", `:3:14: /known_hosts: contains a control character`},
		{"ssh config port", "nodes:\n  a:\n    address: lab\n", "Host lab\n  Port none\n", `:2:3: /nodes/a: ssh config`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			invPath, sshPath := writeInventory(t, tt.doc, tt.ssh)
			inv, err := LoadInventory(invPath, sshPath)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %+v, %v; want a *ConfigError", inv, err)
			}
			if !strings.Contains(err.Error(), invPath+tt.want) {
				t.Errorf("error does not contain %q:\n%v", invPath+tt.want, err)
			}
		})
	}
}

// A value with two things wrong is reported once, by the first rule.
func TestLoadInventoryOneProblemPerValue(t *testing.T) {
	invPath, sshPath := writeInventory(t, "nodes:\n  pve:\n    user: \"root\\n\"\n", "")
	_, err := LoadInventory(invPath, sshPath)
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(ce.Problems[0].Message, "control character") {
		t.Errorf("want one control character problem, got %v", err)
	}
}

func TestGuestFor(t *testing.T) {
	inv := &Inventory{Guest: GuestAccess{User: "ops", IdentityFile: "/k/inv", Via: "direct", Port: 22}}
	static := NetworkConfig{IP: "10.0.0.21/24", GW: "10.0.0.1"}
	tests := []struct {
		name    string
		guest   GuestAccess // inventory guest section
		vm      VM
		want    GuestAccess
		wantErr string
	}{
		{"direct from static ip", inv.Guest, VM{VMID: 8101, NetworkConfig: static},
			GuestAccess{User: "ops", IdentityFile: "/k/inv", Via: "direct", Address: "10.0.0.21", Port: 22}, ""},
		{"vm guest_ssh wins", inv.Guest, VM{VMID: 8101, NetworkConfig: static, GuestSSH: GuestSSH{User: "me", IdentityFile: "/k/vm", Address: "vm.lan", Port: 2222}},
			GuestAccess{User: "me", IdentityFile: "/k/vm", Via: "address", Address: "vm.lan", Port: 2222}, ""},
		{"user from user_config", GuestAccess{Via: "jump"}, VM{VMID: 8101, NetworkConfig: static, UserConfig: UserConfig{Username: "phoenix"}},
			GuestAccess{User: "phoenix", Via: "jump", Address: "10.0.0.21", Port: 22}, ""},
		{"root by default", GuestAccess{}, VM{VMID: 8101, NetworkConfig: static},
			GuestAccess{User: "root", Via: "direct", Address: "10.0.0.21", Port: 22}, ""},
		{"jump keeps via with vm address", GuestAccess{Via: "jump"}, VM{VMID: 8101, GuestSSH: GuestSSH{Address: "10.1.1.1"}},
			GuestAccess{User: "root", Via: "jump", Address: "10.1.1.1", Port: 22}, ""},
		{"via address from inventory", GuestAccess{Via: "address", Address: "gw.lan", Port: 2200}, VM{VMID: 8101},
			GuestAccess{User: "root", Via: "address", Address: "gw.lan", Port: 2200}, ""},
		{"via address without one", GuestAccess{Via: "address"}, VM{VMID: 8101}, GuestAccess{}, "vm 8101: guest ssh: via address needs"},
		{"dhcp has no address", inv.Guest, VM{VMID: 8101, NetworkConfig: NetworkConfig{IP: "dhcp"}}, GuestAccess{}, `network_config.ip is "dhcp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := &Inventory{Guest: tt.guest}
			got, err := inv.GuestFor(&tt.vm)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v\nwant %+v", got, err, tt.want)
			}
		})
	}
}
