package runner

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// whereTask records the node a VM's steps run on; with move set its first
// check plans a migration to it, done in Apply by changing the cluster.
type whereTask struct {
	c    *clusterFixture
	move string
}

func (w *whereTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	if _, err := env.Node.Run(ctx, transport.Cmd{Line: fmt.Sprintf("check %d", env.VM.VMID), Probe: true}); err != nil {
		return tasks.Change{}, err
	}
	w.c.record("%d on %s (home %s)", env.VM.VMID, env.NodeName, env.Home)
	if env.Cluster == nil || w.move == "" {
		return tasks.Change{Action: tasks.None}, nil
	}
	loc, err := env.Cluster.Locate(ctx, env.VM.VMID)
	if err != nil || loc.Node == w.move {
		return tasks.Change{Action: tasks.None}, err
	}
	return tasks.Change{Action: tasks.Update, Summary: "will move", MovesTo: w.move}, nil
}

func (w *whereTask) Apply(ctx context.Context, env *tasks.Env, _ tasks.Change) error {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	g := w.c.view.Guests[env.VM.VMID]
	g.Node = w.move
	w.c.view.Guests[env.VM.VMID] = g
	return nil
}

// clusterFixture: inventory nodes pve1 and pve2 of one cluster, each a
// strict fake whose cluster read is the line "read-cluster".
type clusterFixture struct {
	mu      sync.Mutex
	view    *tasks.ClusterView
	nodes   map[string]*fake.Transport
	down    map[string]bool
	log     []string
	guestOn []string
}

func (c *clusterFixture) record(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, fmt.Sprintf(format, args...))
}

func (c *clusterFixture) read(ctx context.Context, node transport.Runner) (*tasks.ClusterView, error) {
	if _, err := node.Run(ctx, transport.Cmd{Line: "read-cluster"}); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := *c.view
	v.Local = node.(transport.Transport).Name() // pmxcfs's nodename is the node's own
	v.Guests = map[int]tasks.ClusterGuest{}
	for id, g := range c.view.Guests {
		v.Guests[id] = g
	}
	return &v, nil
}

func newClusterFixture(t *testing.T, guests map[int]tasks.ClusterGuest) *clusterFixture {
	return &clusterFixture{
		view: &tasks.ClusterView{Cluster: "lab", Guests: guests,
			Members: map[string]tasks.ClusterMember{"pve1": {Online: true}, "pve2": {Online: true}}},
		nodes: map[string]*fake.Transport{"pve1": fake.New(t).Named("pve1"), "pve2": fake.New(t).Named("pve2")},
		down:  map[string]bool{},
	}
}

func (c *clusterFixture) run(t *testing.T, move string, migrate bool, vmids ...int) (Summary, []Event, error) {
	t.Helper()
	cfg := loadConfig(t, `{"vms": [
{"vmid": 8101, "name": "web01", "node": "pve1"},
{"vmid": 8102, "name": "web02", "node": "pve2"}]}`)
	pb, err := playbooks.Parse("test.yml", []byte("name: t\ntasks:\n  - {name: where, kind: where}\n"))
	if err != nil {
		t.Fatal(err)
	}
	inv := &inventory.Inventory{File: "inventory.yml", DefaultNode: "pve1", Nodes: map[string]*inventory.Node{
		"pve1": {Name: "pve1", PVENode: "localhost", NFSServer: "10.0.0.11"},
		"pve2": {Name: "pve2", PVENode: "localhost", NFSServer: "10.0.0.12"},
	}}
	var events []Event
	sum, err := Run(context.Background(), Options{
		Config: cfg, Inventory: inv, Playbook: pb, VMIDs: vmids, NoRunLock: true, Migrate: migrate, Forks: 1,
		Registry: tasks.Registry{"where": func(map[string]any) (tasks.Task, error) { return &whereTask{c: c, move: move}, nil }},
		Observer: ObserverFunc(func(e Event) { events = append(events, e) }),
		Connect: func(_ context.Context, n *inventory.Node) (transport.Transport, error) {
			if c.down[n.Name] {
				return nil, errors.New("dial tcp: connection refused")
			}
			return c.nodes[n.Name], nil
		},
		GuestFor: func(vm *inventory.VM, n *inventory.Node, _ transport.Transport, _ func(string, ...any)) Guest {
			c.record("guest of %d through %s", vm.VMID, n.Name)
			return &fakeGuest{Transport: fake.New(t)}
		},
		ReadCluster: c.read,
	})
	return sum, events, err
}

// The cluster's view is read once, from the first VM's home; each VM's
// steps run on the node that has it.
func TestClusterPlacement(t *testing.T) {
	c := newClusterFixture(t, map[int]tasks.ClusterGuest{
		8101: {Node: "pve1", Type: "qemu", Name: "web01"}, 8102: {Node: "pve2", Type: "qemu", Name: "web02"}})
	c.nodes["pve1"].Expect(fake.Call{Line: "read-cluster"}, fake.Call{Line: "check 8101"})
	c.nodes["pve2"].Expect(fake.Call{Line: "check 8102"})
	sum, _, err := c.run(t, "", false, 8101, 8102)
	if err != nil || sum.Failed() {
		t.Fatalf("run: %v", err)
	}
	slices.Sort(c.log)
	want := []string{"8101 on pve1 (home pve1)", "8102 on pve2 (home pve2)", "guest of 8101 through pve1", "guest of 8102 through pve2"}
	if !reflect.DeepEqual(c.log, want) {
		t.Errorf("log %q\nwant %q", c.log, want)
	}
}

// A VM that lives elsewhere than its home runs there, says so, and moves
// home when a step says it did: the rest of its steps, and its guest, go
// through the new node.
func TestClusterDriftAndMove(t *testing.T) {
	c := newClusterFixture(t, map[int]tasks.ClusterGuest{8102: {Node: "pve1", Type: "qemu", Name: "web02"}})
	// Read once for the placement (from the home, pve2), once again for
	// the re-check after the move (the view is stale then).
	c.nodes["pve2"].Expect(fake.Call{Line: "read-cluster"}, fake.Call{Line: "check 8102"}, fake.Call{Line: "read-cluster"})
	c.nodes["pve1"].Expect(fake.Call{Line: "check 8102"})
	sum, events, err := c.run(t, "pve2", true, 8102)
	if err != nil || sum.Failed() || sum.Totals.Changed != 1 {
		t.Fatalf("run: %v %+v", err, sum.Totals)
	}
	want := []string{"guest of 8102 through pve1", "8102 on pve1 (home pve2)", "guest of 8102 through pve2", "8102 on pve2 (home pve2)"}
	if !reflect.DeepEqual(c.log, want) {
		t.Errorf("log %q\nwant %q", c.log, want)
	}
	var logs []string
	for _, e := range events {
		if e.Type == EventLog {
			logs = append(logs, e.Text)
		}
	}
	if want := []string{"lives on node pve1; the config places it on pve2"}; !reflect.DeepEqual(logs, want) {
		t.Errorf("logs %q, want %q", logs, want)
	}
}

// A VMID another guest holds is refused before any step, naming where it
// lives; the other VMs go on.
func TestClusterVMIDTaken(t *testing.T) {
	for _, tc := range []struct {
		name  string
		guest tasks.ClusterGuest
		want  string
	}{
		{"another VM", tasks.ClusterGuest{Node: "pve1", Type: "qemu", Name: "db"},
			`vm 8102: vmid 8102 is taken on node pve1 by VM "db", not "web02": choose another vmid (or, if that VM is this one, name it: qm set 8102 --name web02 on pve1)`},
		{"a container", tasks.ClusterGuest{Node: "pve2", Type: "lxc"},
			"vm 8102: vmid 8102 is taken by a container (lxc) on node pve2: choose another vmid"},
		{"a node the inventory lacks", tasks.ClusterGuest{Node: "pve3", Type: "qemu", Name: "web02"},
			"vm 8102: vm 8102 lives on node pve3, which inventory.yml does not list: add it (its name, or pve_node: pve3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterFixture(t, map[int]tasks.ClusterGuest{8102: tc.guest})
			c.nodes["pve1"].Expect(fake.Call{Line: "read-cluster"}, fake.Call{Line: "check 8101"})
			sum, _, _ := c.run(t, "", false, 8101, 8102)
			if len(sum.VMs) != 2 || sum.VMs[0].Err != nil || sum.VMs[1].Err == nil || sum.VMs[1].Err.Error() != tc.want {
				t.Errorf("results %+v\nwant 8102: %s", sum.VMs, tc.want)
			}
		})
	}
}

// A node that cannot be reached fails only its VMs; the view comes from
// another node of the cluster, and the summary names the failed node.
func TestClusterNodeDown(t *testing.T) {
	c := newClusterFixture(t, map[int]tasks.ClusterGuest{
		8101: {Node: "pve1", Type: "qemu", Name: "web01"}, 8102: {Node: "pve2", Type: "qemu", Name: "web02"}})
	c.down["pve2"] = true
	c.nodes["pve1"].Expect(fake.Call{Line: "read-cluster"}, fake.Call{Line: "check 8101"})
	var events []Event
	sum, events, _ := c.run(t, "", false, 8102, 8101)
	if len(sum.VMs) != 2 {
		t.Fatalf("results %+v", sum.VMs)
	}
	for _, r := range sum.VMs {
		switch {
		case r.VMID == 8101 && r.Err != nil:
			t.Errorf("8101 failed: %v", r.Err)
		case r.VMID == 8102 && (r.Err == nil || r.Err.Error() != "vm 8102: node pve2: dial tcp: connection refused"):
			t.Errorf("8102: %v", r.Err)
		}
	}
	if !reflect.DeepEqual(sum.FailedNodes, []string{"pve2"}) {
		t.Errorf("failed nodes %q", sum.FailedNodes)
	}
	last := events[len(events)-1]
	b, _ := last.MarshalJSON()
	if !strings.Contains(string(b), `"failed_vms":[8102],"failed_nodes":["pve2"]`) {
		t.Errorf("summary %s", b)
	}
	if note := SummaryNote(last); note != "; failed node: pve2 (its VMs failed, the others went on)" {
		t.Errorf("summary note %q", note)
	}
}

// A node connection lost during the run is named in the summary too.
func TestClusterNodeLost(t *testing.T) {
	c := newClusterFixture(t, map[int]tasks.ClusterGuest{})
	c.nodes["pve1"].Expect(fake.Call{Line: "read-cluster"}, fake.Call{Line: "check 8101"})
	lost := fmt.Errorf("%w to root@10.0.0.12:22: EOF", transport.ErrDisconnected)
	c.nodes["pve2"].Expect(fake.Call{Line: "check 8102", Err: lost})
	sum, _, _ := c.run(t, "", false, 8101, 8102)
	if !reflect.DeepEqual(sum.FailedNodes, []string{"pve2"}) || sum.VMs[0].Err != nil || sum.VMs[1].Err == nil {
		t.Errorf("failed nodes %q, results %+v", sum.FailedNodes, sum.VMs)
	}
}
