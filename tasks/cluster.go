package tasks

import (
	"context"

	"github.com/phoenix-hv/phoenix/transport"
)

// ClusterView is one read of where the guests of a Proxmox cluster live
// (/etc/pve/.vmlist and .members, pve-more.md §3.2), from any of its nodes:
// pmxcfs shows every node the same files.
type ClusterView struct {
	// Local is the Proxmox name of the node it was read on ("" when the
	// node did not say).
	Local string
	// Cluster is the cluster's name; "" for a standalone node.
	Cluster string
	// Members are the cluster's nodes by Proxmox name; a standalone node
	// has only itself.
	Members map[string]ClusterMember
	// Guests are the cluster's VMs and containers by VMID (VMIDs are
	// cluster-unique).
	Guests map[int]ClusterGuest
}

// ClusterMember is one node of a cluster.
type ClusterMember struct {
	Online bool
	IP     string // "" when pmxcfs does not know it
}

// ClusterGuest is one VMID of a cluster.
type ClusterGuest struct {
	Node string // Proxmox name of the node that owns it
	Type string // qemu or lxc
	Name string // from its config; "" when it has none
}

// Location is where a VMID lives, as the run's view of its cluster says.
type Location struct {
	Exists bool
	// Node is the inventory name of the node it lives on; "" when the
	// inventory does not list that node.
	Node    string
	PVENode string // the node's Proxmox name
	Type    string // qemu or lxc
	Name    string
}

// Cluster is what a task sees of the nodes of its VM's cluster besides its
// own (Env.Cluster): where a VMID lives, and the run's connection to
// another node (a clone source, a migration).
type Cluster interface {
	// Locate reads where vmid lives: from the view the run read once,
	// read again after the run applied a change.
	Locate(ctx context.Context, vmid int) (Location, error)
	// Node returns the run's connection to an inventory node.
	Node(ctx context.Context, name string) (transport.Transport, error)
	// PVEName is the Proxmox name of an inventory node of the cluster
	// ("" when the node is not a member).
	PVEName(name string) string
}
