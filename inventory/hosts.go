package inventory

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
	NFSServer    string // address guests use to reach this node's NFS exports
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
