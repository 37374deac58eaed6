package inventory

import (
	"fmt"
	"net/netip"
)

// Inventory is a loaded inventory.yml.
type Inventory struct {
	File string
	// Nodes are the Proxmox nodes, by name.
	Nodes       map[string]*Node
	DefaultNode string
	// VMNodes maps a vmid to the node it lives on (default DefaultNode).
	VMNodes map[int]string
	Guest   GuestAccess
	// KnownHosts is phoenix's known_hosts file (default ~/.ssh/known_hosts);
	// GuestKnownHosts holds the pinned guest keys (default ~/.config/phoenix/guest_known_hosts).
	KnownHosts      string
	GuestKnownHosts string
}

// Node is one Proxmox VE node reached over SSH.
type Node struct {
	Name         string // inventory name
	Address      string // host name or IP; ~/.ssh/config may rewrite it
	Port         int
	User         string
	IdentityFile string
	ProxyJump    string
	PVENode      string // Proxmox node name (hostname) for pvesh paths; default "localhost"
	NFSServer    string // address guests use to reach this node's NFS exports, as fstab wants it (IPv6 in brackets)
	// Jump is ProxyJump resolved: the host to connect through (itself
	// possibly behind another Jump), nil for a direct connection. A hop that
	// names an inventory node is a copy of that node.
	Jump *Node
}

// GuestAccess says how phoenix reaches guests over SSH when the agent is down.
type GuestAccess struct {
	User         string
	IdentityFile string
	// Via is "direct" (the VM's network_config.ip), "jump" (through the node),
	// or "address" (Address below, or the VM's guest_ssh.address).
	Via     string
	Address string
	Port    int
}

// NodeFor returns the node vmid lives on.
func (inv *Inventory) NodeFor(vmid int) *Node {
	if name, ok := inv.VMNodes[vmid]; ok {
		return inv.Nodes[name]
	}
	return inv.Nodes[inv.DefaultNode]
}

// GuestFor returns how to reach vm over SSH: the VM's guest_ssh first, then
// the inventory's guest section, then defaults (user: the VM's
// user_config.username, else root; port 22). Address is always filled:
// with via direct or jump it is the VM's static IP, and a guest_ssh.address
// turns direct into address.
func (inv *Inventory) GuestFor(vm *VM) (GuestAccess, error) {
	g := inv.Guest
	out := GuestAccess{
		User:         firstOf(vm.GuestSSH.User, g.User, vm.UserConfig.Username, "root"),
		IdentityFile: firstOf(vm.GuestSSH.IdentityFile, g.IdentityFile),
		Via:          firstOf(g.Via, "direct"),
		Address:      vm.GuestSSH.Address,
		Port:         firstInt(vm.GuestSSH.Port, g.Port, 22),
	}
	switch {
	case out.Address != "":
		if out.Via == "direct" {
			out.Via = "address"
		}
	case out.Via == "address":
		if out.Address = g.Address; out.Address == "" {
			return out, fmt.Errorf("vm %d: guest ssh: via address needs guest.address in the inventory or guest_ssh.address", vm.VMID)
		}
	default:
		ip := vm.NetworkConfig.IP
		prefix, err := netip.ParsePrefix(ip)
		if err != nil {
			return out, fmt.Errorf("vm %d: guest ssh: no address: network_config.ip is %q; set guest_ssh.address", vm.VMID, ip)
		}
		out.Address = prefix.Addr().String()
	}
	return out, nil
}
