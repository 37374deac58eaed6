package placement

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// world is a set of inventory nodes, each answering with the view of its
// cluster (nil: no pmxcfs), or down.
type world struct {
	t     *testing.T
	inv   *inventory.Inventory
	views map[string]*tasks.ClusterView // by inventory node
	down  map[string]bool
	reads []string // inventory nodes read, in order
}

func (w *world) connect(_ context.Context, n *inventory.Node) (transport.Transport, error) {
	if w.down[n.Name] {
		return nil, errors.New("node " + n.Name + ": connection refused")
	}
	return fake.New(w.t).Named(n.Name), nil
}

func (w *world) read(_ context.Context, node transport.Runner) (*tasks.ClusterView, error) {
	name := node.(*fake.Transport).Name()
	w.reads = append(w.reads, name)
	return w.views[name], nil
}

func (w *world) placer() *Placer { return New(w.inv, w.read, w.connect) }

func nodes(ns ...*inventory.Node) *inventory.Inventory {
	inv := &inventory.Inventory{File: "inventory.yml", Nodes: map[string]*inventory.Node{}}
	for _, n := range ns {
		inv.Nodes[n.Name] = n
	}
	return inv
}

func TestPlaceMatchesMembers(t *testing.T) {
	// The node read from is its view's Local whatever the inventory calls
	// it; another is matched by pve_node (else its name), then by address.
	view := &tasks.ClusterView{Local: "pve-a", Cluster: "lab",
		Members: map[string]tasks.ClusterMember{"pve-a": {}, "pve-b": {}, "pve-c": {IP: "10.0.0.13"}},
		Guests: map[int]tasks.ClusterGuest{
			101: {Node: "pve-a", Type: "qemu", Name: "a"}, 102: {Node: "pve-b", Type: "qemu", Name: "b"}, 103: {Node: "pve-c", Type: "qemu", Name: "c"}},
	}
	a := &inventory.Node{Name: "alpha", PVENode: "localhost"}
	b := &inventory.Node{Name: "beta", PVENode: "pve-b"}
	c := &inventory.Node{Name: "gamma", PVENode: "localhost", Address: "10.0.0.13"}
	w := &world{t: t, inv: nodes(a, b, c), views: map[string]*tasks.ClusterView{"alpha": view}}
	p := w.placer()
	for _, tc := range []struct {
		vmid int
		name string
		want *inventory.Node
	}{{101, "a", a}, {102, "b", b}, {103, "c", c}, {104, "d", a}} {
		got, scope, err := p.Place(context.Background(), a, &inventory.VM{VMID: tc.vmid, Name: tc.name})
		if err != nil || got != tc.want || scope == nil {
			t.Errorf("vm %d: %v, %v; want %s", tc.vmid, got, err, tc.want.Name)
		}
	}
	if !reflect.DeepEqual(w.reads, []string{"alpha"}) {
		t.Errorf("reads %q, want one from alpha", w.reads)
	}
	s := &Scope{p: p, home: a}
	if s.PVEName("gamma") != "pve-c" || s.PVEName("alpha") != "pve-a" {
		t.Errorf("names %q %q", s.PVEName("gamma"), s.PVEName("alpha"))
	}
}

// Standalone nodes are clusters of one: each is read, and a VMID on one
// says nothing of the other.
func TestPlaceStandaloneNodes(t *testing.T) {
	n1, n2 := &inventory.Node{Name: "n1"}, &inventory.Node{Name: "n2"}
	standalone := func(name string, ids ...int) *tasks.ClusterView {
		v := &tasks.ClusterView{Local: name, Members: map[string]tasks.ClusterMember{name: {Online: true}}, Guests: map[int]tasks.ClusterGuest{}}
		for _, id := range ids {
			v.Guests[id] = tasks.ClusterGuest{Node: name, Type: "qemu", Name: "other"}
		}
		return v
	}
	w := &world{t: t, inv: nodes(n1, n2), views: map[string]*tasks.ClusterView{"n1": standalone("n1", 8101), "n2": standalone("n2")}}
	p := w.placer()
	got, _, err := p.Place(context.Background(), n2, &inventory.VM{VMID: 8101, Name: "web01"})
	if err != nil || got != n2 {
		t.Errorf("8101 on n2: %v, %v", got, err)
	}
	if !reflect.DeepEqual(w.reads, []string{"n2"}) {
		t.Errorf("reads %q", w.reads)
	}
}

// Without pmxcfs (no .vmlist) the config's node is all there is.
func TestPlaceWithoutView(t *testing.T) {
	n1 := &inventory.Node{Name: "n1"}
	w := &world{t: t, inv: nodes(n1), views: map[string]*tasks.ClusterView{}}
	p := w.placer()
	for range 2 {
		got, scope, err := p.Place(context.Background(), n1, &inventory.VM{VMID: 8101})
		if err != nil || got != n1 || scope != nil {
			t.Errorf("%v %v %v", got, scope, err)
		}
	}
	if len(w.reads) != 1 {
		t.Errorf("reads %q, want one", w.reads)
	}
	var none *Placer
	if got, scope, err := none.Place(context.Background(), n1, &inventory.VM{VMID: 8101}); got != n1 || scope != nil || err != nil {
		t.Errorf("nil placer: %v %v %v", got, scope, err)
	}
}

// A home that is down is placed from another node of its cluster; the
// view is read again after a change.
func TestPlaceHomeDownAndChanges(t *testing.T) {
	n1, n2 := &inventory.Node{Name: "pve1"}, &inventory.Node{Name: "pve2"}
	view := &tasks.ClusterView{Local: "pve1", Members: map[string]tasks.ClusterMember{"pve1": {}, "pve2": {}},
		Guests: map[int]tasks.ClusterGuest{8102: {Node: "pve1", Type: "qemu", Name: "web02"}}}
	w := &world{t: t, inv: nodes(n1, n2), views: map[string]*tasks.ClusterView{"pve1": view}, down: map[string]bool{"pve2": true}}
	p := w.placer()
	ctx := context.Background()
	got, scope, err := p.Place(ctx, n2, &inventory.VM{VMID: 8102, Name: "web02"})
	if err != nil || got != n1 {
		t.Fatalf("8102: %v, %v; want pve1 (it lives there)", got, err)
	}
	if _, _, err := p.Place(ctx, n2, &inventory.VM{VMID: 8103}); err != nil {
		t.Errorf("8103: %v", err)
	}
	p.Changed()
	view.Guests[8102] = tasks.ClusterGuest{Node: "pve2", Type: "qemu", Name: "web02"}
	loc, err := scope.Locate(ctx, 8102)
	if err != nil || loc != (tasks.Location{Exists: true, Node: "pve2", PVENode: "pve2", Type: "qemu", Name: "web02"}) {
		t.Errorf("after the change: %+v, %v", loc, err)
	}
	if !reflect.DeepEqual(w.reads, []string{"pve1", "pve1"}) {
		t.Errorf("reads %q", w.reads)
	}
	// No node of the cluster answers.
	w2 := &world{t: t, inv: nodes(n1, n2), views: map[string]*tasks.ClusterView{}, down: map[string]bool{"pve1": true, "pve2": true}}
	if _, _, err := w2.placer().Place(ctx, n2, &inventory.VM{VMID: 8102}); err == nil || err.Error() != "node pve2: connection refused" {
		t.Errorf("all down: %v", err)
	}
}
