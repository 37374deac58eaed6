// Package placement knows where the VMs of a run live: it reads each
// Proxmox cluster's view of its guests once (tasks.ClusterView, from any
// node that answers), matches its members to the inventory's nodes, and
// says for each VM the node that has it. docs/ARCHITECTURE.md "Clusters".
package placement

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// ReadCluster reads the view of the cluster a node belongs to (nil, and no
// error, when the node has none: no pmxcfs).
type ReadCluster func(ctx context.Context, node transport.Runner) (*tasks.ClusterView, error)

// Connect returns the connection to a node, opened once and shared.
type Connect func(ctx context.Context, node *inventory.Node) (transport.Transport, error)

// Placer knows where the run's VMs live. It reads the view of each cluster
// once, from the first of its nodes that answers (a node outside every
// view read so far starts a new one: several standalone nodes are several
// clusters), and reads it again when a lookup comes after the run applied a
// change (a clone, a migration, a destroy).
type Placer struct {
	inv     *inventory.Inventory
	read    ReadCluster
	connect Connect

	mu      sync.Mutex
	changes int // changes applied in the run so far
	views   []*clusterView
	// noView are the nodes whose read found no cluster view: placement
	// there is the config's alone.
	noView map[string]bool
}

// clusterView is one cluster's view with the inventory's nodes matched to
// its members.
type clusterView struct {
	*tasks.ClusterView
	from    string            // inventory node it is read from
	changes int               // Placer.changes when it was read
	pveName map[string]string // inventory name → Proxmox name, members only
	invName map[string]string // Proxmox name → inventory name
}

// New returns a Placer that reads views with read over connections from
// connect.
func New(inv *inventory.Inventory, read ReadCluster, connect Connect) *Placer {
	return &Placer{inv: inv, read: read, connect: connect, noView: map[string]bool{}}
}

// Changed records an applied change: views read before are stale.
func (p *Placer) Changed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changes++
}

// view returns the current view of home's cluster; nil when home has none.
func (p *Placer) view(ctx context.Context, home *inventory.Node) (*clusterView, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noView[home.Name] {
		return nil, nil
	}
	if v := p.covering(home.Name); v != nil {
		if v.changes == p.changes {
			return v, nil
		}
		if err := p.reread(ctx, v); err != nil {
			return nil, err
		}
		return v, nil
	}
	// Home first, then the nodes no view covers yet, in name order.
	var homeErr error
	for _, n := range p.candidates(home) {
		v, err := p.readFrom(ctx, n)
		if err != nil {
			if n == home {
				homeErr = err
			}
			continue
		}
		if v == nil {
			p.noView[n.Name] = true
			if n == home {
				return nil, nil
			}
			continue
		}
		p.views = append(p.views, v)
		if _, ok := v.pveName[home.Name]; ok {
			return v, nil
		}
	}
	if homeErr != nil {
		return nil, homeErr
	}
	return nil, fmt.Errorf("node %s: no reachable node of its cluster", home.Name)
}

// covering is the view whose cluster has node name.
func (p *Placer) covering(name string) *clusterView {
	for _, v := range p.views {
		if _, ok := v.pveName[name]; ok {
			return v
		}
	}
	return nil
}

// candidates are the nodes to read home's view from: home, then every
// other node in no view yet.
func (p *Placer) candidates(home *inventory.Node) []*inventory.Node {
	out := []*inventory.Node{home}
	for _, name := range slices.Sorted(maps.Keys(p.inv.Nodes)) {
		if name != home.Name && !p.noView[name] && p.covering(name) == nil {
			out = append(out, p.inv.Nodes[name])
		}
	}
	return out
}

// reread refreshes v from the node it was read from, else from another of
// its members.
func (p *Placer) reread(ctx context.Context, v *clusterView) error {
	var errs []error
	others := slices.DeleteFunc(slices.Sorted(maps.Keys(v.pveName)), func(n string) bool { return n == v.from })
	for _, name := range append([]string{v.from}, others...) {
		fresh, err := p.readFrom(ctx, p.inv.Nodes[name])
		if err == nil && fresh != nil {
			*v = *fresh
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("read the cluster's vm list again: %w", errors.Join(errs...))
}

// readFrom reads the view from inventory node n and matches the inventory's
// nodes to its members: n is the view's own node; another node is the
// member named as its PVEName, else the member whose address it has.
func (p *Placer) readFrom(ctx context.Context, n *inventory.Node) (*clusterView, error) {
	t, err := p.connect(ctx, n)
	if err != nil {
		return nil, err
	}
	cv, err := p.read(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	if cv == nil {
		return nil, nil
	}
	v := &clusterView{ClusterView: cv, from: n.Name, changes: p.changes, pveName: map[string]string{}, invName: map[string]string{}}
	local := cv.Local
	if local == "" {
		local = n.PVEName()
	}
	v.pveName[n.Name], v.invName[local] = local, n.Name
	for _, name := range slices.Sorted(maps.Keys(p.inv.Nodes)) {
		other := p.inv.Nodes[name]
		if name == n.Name {
			continue
		}
		member := ""
		if _, ok := cv.Members[other.PVEName()]; ok {
			member = other.PVEName()
		} else {
			for m, info := range cv.Members {
				if info.IP != "" && info.IP == other.Address {
					member = m
				}
			}
		}
		if member != "" && v.invName[member] == "" {
			v.pveName[name], v.invName[member] = member, name
		}
	}
	return v, nil
}

// Place finds where vm lives. Without a view (the placer off, or no pmxcfs
// on home) it is home and scope is nil. A VMID held by a container, or by
// a VM of another name, is refused: it is not this VM, and nothing may be
// done to it.
func (p *Placer) Place(ctx context.Context, home *inventory.Node, vm *inventory.VM) (*inventory.Node, *Scope, error) {
	if p == nil {
		return home, nil, nil
	}
	v, err := p.view(ctx, home)
	if err != nil || v == nil {
		return home, nil, err
	}
	scope := &Scope{p: p, home: home}
	g, ok := v.Guests[vm.VMID]
	if !ok {
		return home, scope, nil
	}
	invName := v.invName[g.Node]
	switch {
	case g.Type != "qemu":
		return nil, nil, &Conflict{fmt.Sprintf("vmid %d is taken by a container (%s) on node %s: choose another vmid", vm.VMID, g.Type, g.Node)}
	case invName == home.Name:
		return home, scope, nil
	case g.Name != vm.Name:
		return nil, nil, &Conflict{fmt.Sprintf("vmid %d is taken on node %s by VM %q, not %q: choose another vmid (or, if that VM is this one, name it: qm set %d --name %s on %[2]s)",
			vm.VMID, g.Node, g.Name, vm.Name, vm.VMID, vm.Name)}
	case invName == "":
		return nil, nil, &Conflict{fmt.Sprintf("vm %d lives on node %s, which %s does not list: add it (its name, or pve_node: %[2]s)", vm.VMID, g.Node, p.inv.File)}
	}
	return p.inv.Nodes[invName], scope, nil
}

// Conflict is a VMID phoenix must not work on: another guest has it, or it
// lives on a node the inventory does not list.
type Conflict struct{ msg string }

func (c *Conflict) Error() string { return c.msg }

// Scope is tasks.Cluster for the VMs of one home node's cluster.
type Scope struct {
	p    *Placer
	home *inventory.Node
}

func (s *Scope) Locate(ctx context.Context, vmid int) (tasks.Location, error) {
	v, err := s.p.view(ctx, s.home)
	if err != nil {
		return tasks.Location{}, err
	}
	if v == nil {
		return tasks.Location{}, errors.New("no cluster view")
	}
	g, ok := v.Guests[vmid]
	if !ok {
		return tasks.Location{}, nil
	}
	return tasks.Location{Exists: true, Node: v.invName[g.Node], PVENode: g.Node, Type: g.Type, Name: g.Name}, nil
}

func (s *Scope) Node(ctx context.Context, name string) (transport.Transport, error) {
	n := s.p.inv.Nodes[name]
	if n == nil {
		return nil, fmt.Errorf("node %s is not in %s", name, s.p.inv.File)
	}
	return s.p.connect(ctx, n)
}

func (s *Scope) PVEName(name string) string {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if v := s.p.covering(s.home.Name); v != nil {
		return v.pveName[name]
	}
	return ""
}
