package inventory

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
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
	PVENode      string // Proxmox node name (hostname) for pvesh paths; default "localhost" (see PVEName)
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

// Home returns the node the VM is placed on: the VM's node in the config,
// else the inventory's vms: entry, else vm_defaults.node, else
// default_node. A node the inventory lacks, or a VM placed on two
// different nodes by the config and the inventory, is an error naming
// where each is written.
func (inv *Inventory) Home(cfg *Config, vm *VM) (*Node, error) {
	mapped, inMap := inv.VMNodes[vm.VMID]
	switch {
	case vm.Node != "" && inMap && mapped != vm.Node:
		return nil, inv.nodeProblem(cfg, vm.nodeAt, fmt.Sprintf("places vm %d on node %s, but %s places it on %s (vms: %d): name its node in one place",
			vm.VMID, vm.Node, inv.File, mapped, vm.VMID))
	case vm.Node != "":
		return inv.known(cfg, vm.nodeAt, vm.Node)
	case inMap:
		return inv.Nodes[mapped], nil // checked when the inventory was loaded
	case cfg != nil && cfg.Defaults.Node != "":
		return inv.known(cfg, cfg.Defaults.nodeAt, cfg.Defaults.Node)
	}
	if n := inv.Nodes[inv.DefaultNode]; n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("vm %d: no node for it in the inventory %s", vm.VMID, inv.File)
}

// known returns the inventory node name, written in the config at at.
func (inv *Inventory) known(cfg *Config, at position, name string) (*Node, error) {
	if n := inv.Nodes[name]; n != nil {
		return n, nil
	}
	return nil, inv.nodeProblem(cfg, at, fmt.Sprintf("unknown node %q: %s has nodes %s", name, inv.File, strings.Join(slices.Sorted(maps.Keys(inv.Nodes)), ", ")))
}

// nodeProblem is a config error at a node reference.
func (inv *Inventory) nodeProblem(cfg *Config, at position, msg string) error {
	file := "config"
	if cfg != nil {
		file = cfg.File
	}
	return &ConfigError{File: file, Problems: []Problem{{Pointer: at.ptr, Line: at.line, Column: at.col, Message: msg}}}
}

// PVEName is the node's Proxmox name as a cluster knows it (the directory
// under /etc/pve/nodes): pve_node when set, else the inventory name.
func (n *Node) PVEName() string {
	if n.PVENode != "" && n.PVENode != "localhost" {
		return n.PVENode
	}
	return n.Name
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
