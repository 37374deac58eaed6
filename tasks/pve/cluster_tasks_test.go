package pve

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// fakeCluster is a two-node cluster as a task sees it: inventory nodes
// pve1 and pve2 (Proxmox names the same), each a strict fake.
type fakeCluster struct {
	locs  map[int]tasks.Location
	nodes map[string]*fake.Transport
}

func (c *fakeCluster) Locate(_ context.Context, vmid int) (tasks.Location, error) {
	return c.locs[vmid], nil
}

func (c *fakeCluster) Node(_ context.Context, name string) (transport.Transport, error) {
	if n := c.nodes[name]; n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("node %s: connection refused", name)
}

func (c *fakeCluster) PVEName(name string) string {
	if name == "pve1" || name == "pve2" {
		return name
	}
	return ""
}

func on(node string) tasks.Location {
	return tasks.Location{Exists: true, Node: node, PVENode: node, Type: "qemu"}
}

// storage.cfg with a shared and a local storage, as the cluster lab has it.
const clusterStorage = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup,snippets,import\n\n" +
	"lvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n\n" +
	"dir: shared\n\tpath /mnt/pve/shared\n\tcontent images\n\tshared 1\n"

func readStorageCfg() fake.Call {
	return fake.Call{Line: catIfExists(storageCfg), Result: fake.Out(clusterStorage)}
}

// template9000 with every volume on the shared storage.
var sharedTemplate = with(template9000, "scsi0", "shared:9000/base-9000-disk-0.raw,size=32G", "ide2", "shared:9000/vm-9000-cloudinit.qcow2,media=cdrom")

// A clone of a template on another node: qm clone runs on the template's
// node (qm never proxies), with --target when its volumes are shared, else
// a full copy there moved with qm migrate.
func TestCloneAcrossNodes(t *testing.T) {
	tests := []struct {
		name     string
		template map[string]string
		params   map[string]any
		commands []string
		summary  string
		calls    []string // on pve1, in order
	}{
		{
			name: "shared storage: --target", template: sharedTemplate, params: map[string]any{"source": 9000, "name": "web02"},
			commands: []string{"on pve1: qm clone 9000 8102 --name web02 --full 1 --target pve2"},
			summary:  `will clone template 9000 to vm 8102 "web02" (full copy) from node pve1 to pve2`,
			calls:    []string{"qm clone 9000 8102 --name web02 --full 1 --target pve2"},
		},
		{
			name: "linked clone on shared storage", template: sharedTemplate, params: map[string]any{"source": 9000, "name": "web02", "full": false},
			commands: []string{"on pve1: qm clone 9000 8102 --name web02 --full 0 --target pve2"},
			summary:  `will clone template 9000 to vm 8102 "web02" (linked clone) from node pve1 to pve2`,
			calls:    []string{"qm clone 9000 8102 --name web02 --full 0 --target pve2"},
		},
		{
			name: "shared target storage", template: sharedTemplate, params: map[string]any{"source": 9000, "name": "web02", "storage": "shared"},
			commands: []string{"on pve1: qm clone 9000 8102 --name web02 --full 1 --storage shared --target pve2"},
			summary:  `will clone template 9000 to vm 8102 "web02" (full copy on shared) from node pve1 to pve2`,
			calls:    []string{"qm clone 9000 8102 --name web02 --full 1 --storage shared --target pve2"},
		},
		{
			name: "local storage: clone, then migrate", template: template9000, params: map[string]any{"source": 9000, "name": "web02"},
			commands: []string{"on pve1: qm clone 9000 8102 --name web02 --full 1", "on pve1: qm migrate 8102 pve2"},
			summary: `will clone template 9000 to vm 8102 "web02" (full copy) on node pve1, then moved to pve2 ` +
				`(offline migration: vm 9000 uses local storage (ide2 (local-lvm), scsi0 (local-lvm)), and Proxmox clones to another node only from shared storage)`,
			calls: []string{"qm clone 9000 8102 --name web02 --full 1", "qm migrate 8102 pve2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pve1 := fake.New(t, stateRead(9000, tc.template, "stopped", noSnapshots)).Named("pve1")
			pve2 := fake.New(t, missingRead(8102), readStorageCfg()).Named("pve2")
			env := &tasks.Env{VM: &inventory.VM{VMID: 8102, Name: "web02"}, Node: pve2, NodeName: "pve2", Home: "pve2",
				Cluster: &fakeCluster{locs: map[int]tasks.Location{9000: on("pve1")}, nodes: map[string]*fake.Transport{"pve1": pve1}}}
			task := newTask(t, "vm_clone", tc.params)
			c := checked(t, task, env)
			if !slices.Equal(c.Commands, tc.commands) || c.Summary != tc.summary {
				t.Fatalf("commands %q\nsummary %s\nwant %q\n%s", c.Commands, c.Summary, tc.commands, tc.summary)
			}
			for _, l := range tc.calls {
				pve1.Expect(fake.Call{Line: l})
			}
			if err := task.Apply(ctx, env, c); err != nil {
				t.Fatal(err)
			}
			// Done: the clone is on pve2.
			env.Forget("pve:")
			pve2.Expect(stateRead(8102, cloned, "stopped", noSnapshots))
			if c, err := task.Check(ctx, env); err != nil || c.Pending() {
				t.Errorf("re-check = %q, %v; want none", c.Summary, err)
			}
		})
	}
}

func TestCloneAcrossNodesRefused(t *testing.T) {
	ctx := context.Background()
	newEnv := func(t *testing.T, template map[string]string, pve1Calls ...fake.Call) (*tasks.Env, *fake.Transport) {
		pve1 := fake.New(t, append([]fake.Call{stateRead(9000, template, "stopped", noSnapshots)}, pve1Calls...)...).Named("pve1")
		pve2 := fake.New(t, missingRead(8102), readStorageCfg()).Named("pve2")
		return &tasks.Env{VM: &inventory.VM{VMID: 8102, Name: "web02"}, Node: pve2, NodeName: "pve2", Home: "pve2",
			Cluster: &fakeCluster{locs: map[int]tasks.Location{9000: on("pve1")}, nodes: map[string]*fake.Transport{"pve1": pve1}}}, pve1
	}
	t.Run("linked clone of local storage", func(t *testing.T) {
		env, _ := newEnv(t, template9000)
		_, err := newTask(t, "vm_clone", map[string]any{"source": 9000, "full": false}).Check(ctx, env)
		want := "clone source vm 9000 uses local storage (ide2 (local-lvm), scsi0 (local-lvm)) on node pve1: a linked clone cannot reach node pve2"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %v\nwant %s…", err, want)
		}
	})
	t.Run("local target storage", func(t *testing.T) {
		env, _ := newEnv(t, sharedTemplate)
		_, err := newTask(t, "vm_clone", map[string]any{"source": 9000, "storage": "local-lvm"}).Check(ctx, env)
		want := "storage local-lvm is not shared: a clone to another node (pve2) goes to shared storage; leave storage out to keep the source's"
		if err == nil || err.Error() != want {
			t.Errorf("error %v\nwant %s", err, want)
		}
	})
	// storage.cfg changed between the read and the clone: Proxmox's own
	// refusal (pve-more.md §3.6) is said plainly, its text kept.
	t.Run("qm refuses", func(t *testing.T) {
		line := "qm clone 9000 8102 --full 1 --target pve2"
		refusal := "can't clone VM to node 'pve2' (VM uses local storage)\n"
		env, _ := newEnv(t, sharedTemplate, fake.Call{Line: line, Result: fake.Fail(255, refusal)})
		task := newTask(t, "vm_clone", map[string]any{"source": 9000})
		c := checked(t, task, env)
		err := task.Apply(ctx, env, c)
		want := "Proxmox refused to clone vm 9000 from node pve1 to pve2 (can't clone VM to node 'pve2' (VM uses local storage)): " +
			"every volume of the source must be on shared storage (storage.cfg: shared 1, or nfs, cephfs, rbd, …) and the storage enabled on pve2; " +
			"or keep a template on each node: on node pve1: "
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), refusal[:20]) {
			t.Errorf("error %v\nwant %s…", err, want)
		}
	})
	t.Run("source node down", func(t *testing.T) {
		pve2 := fake.New(t, missingRead(8102)).Named("pve2")
		env := &tasks.Env{VM: &inventory.VM{VMID: 8102}, Node: pve2, NodeName: "pve2", Home: "pve2",
			Cluster: &fakeCluster{locs: map[int]tasks.Location{9000: on("pve1")}}}
		_, err := newTask(t, "vm_clone", map[string]any{"source": 9000}).Check(ctx, env)
		if want := "clone source vm 9000 is on node pve1: node pve1: connection refused"; err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
}

// The clone source on the VM's own node is read and cloned there, as
// without a cluster.
func TestCloneOnTheSameNode(t *testing.T) {
	pve1 := fake.New(t, missingRead(8101), stateRead(9000, template9000, "stopped", noSnapshots))
	env := &tasks.Env{VM: &inventory.VM{VMID: 8101, Name: "web01"}, Node: pve1, NodeName: "pve1", Home: "pve1",
		Cluster: &fakeCluster{locs: map[int]tasks.Location{9000: on("pve1")}}}
	c := checked(t, newTask(t, "vm_clone", map[string]any{"source": 9000, "name": "web01"}), env)
	if want := []string{"qm clone 9000 8101 --name web01 --full 1"}; !slices.Equal(c.Commands, want) {
		t.Errorf("commands %q, want %q", c.Commands, want)
	}
}

func TestPlace(t *testing.T) {
	ctx := context.Background()
	web := &inventory.VM{VMID: 8102, Name: "web02"}
	cluster := func(loc tasks.Location) *fakeCluster {
		return &fakeCluster{locs: map[int]tasks.Location{8102: loc}}
	}
	for _, tc := range []struct {
		name    string
		cluster tasks.Cluster
		summary string
	}{
		{"no cluster view", nil, "node pve2, as the config says (it has no cluster vm list to check)"},
		{"not made yet", cluster(tasks.Location{}), "vm 8102 does not exist yet; it goes on node pve2"},
		{"at home", cluster(on("pve2")), "vm 8102 is on node pve2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := &tasks.Env{VM: web, Node: fake.New(t), NodeName: "pve2", Home: "pve2"}
			if tc.cluster != nil {
				env.Cluster = tc.cluster
			}
			c, err := newTask(t, "vm_place", nil).Check(ctx, env)
			if err != nil || c.Pending() || c.Summary != tc.summary {
				t.Errorf("check = %s %q, %v; want none %q", c.Action, c.Summary, err, tc.summary)
			}
		})
	}

	// Elsewhere: drift, a plan with --migrate only.
	drifted := func(t *testing.T, migrate, dryRun bool, calls ...fake.Call) (*tasks.Env, *fake.Transport) {
		pve1 := fake.New(t, calls...).Named("pve1")
		return &tasks.Env{VM: web, Node: pve1, NodeName: "pve1", Home: "pve2", Migrate: migrate, DryRun: dryRun, Cluster: cluster(on("pve1"))}, pve1
	}
	t.Run("drift in a dry run", func(t *testing.T) {
		env, _ := drifted(t, false, true)
		c, err := newTask(t, "vm_place", nil).Check(ctx, env)
		if err != nil || c.Action != tasks.Update || c.Summary != "vm 8102 lives on node pve1, the config places it on pve2; --migrate moves it (offline)" ||
			c.Diff != "-node: pve1\n+node: pve2\n" || c.Plan != nil {
			t.Errorf("check = %s %q %q %v, %v", c.Action, c.Summary, c.Diff, c.Plan, err)
		}
	})
	t.Run("drift without --migrate", func(t *testing.T) {
		env, _ := drifted(t, false, false)
		_, err := newTask(t, "vm_place", nil).Check(ctx, env)
		want := "vm 8102 lives on node pve1, the config places it on pve2: run again with --migrate to move it (offline: shut down, moved, started again), or set its node to pve1 in the config"
		if err == nil || err.Error() != want {
			t.Errorf("error %v\nwant %s", err, want)
		}
	})
	for _, tc := range []struct {
		status, how     string
		commands, calls []string // a fallback is listed after its call, run only if needed
	}{
		{"stopped", "offline", []string{"qm migrate 8102 pve2"}, []string{"qm migrate 8102 pve2"}},
		{"running", "shut down (qm stop after 120s), then moved offline",
			[]string{"qm shutdown 8102 --timeout 120", "qm stop 8102", "qm migrate 8102 pve2"}, []string{"qm shutdown 8102 --timeout 120", "qm migrate 8102 pve2"}},
		{"paused", "stopped hard (paused), then moved offline", []string{"qm stop 8102", "qm migrate 8102 pve2"}, []string{"qm stop 8102", "qm migrate 8102 pve2"}},
	} {
		t.Run("migrate "+tc.status, func(t *testing.T) {
			env, pve1 := drifted(t, true, false, stateRead(8102, with(cloned, "name", "web02"), tc.status, noSnapshots))
			task := newTask(t, "vm_place", nil)
			c := checked(t, task, env)
			if want := "will move vm 8102 from node pve1 to pve2 (" + tc.how + ")"; c.Summary != want || !slices.Equal(c.Commands, tc.commands) || c.MovesTo != "pve2" {
				t.Fatalf("check = %q %q moves to %q\nwant %q %q pve2", c.Summary, c.Commands, c.MovesTo, want, tc.commands)
			}
			for _, l := range tc.calls {
				pve1.Expect(fake.Call{Line: l})
			}
			if err := task.Apply(ctx, env, c); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("a linked clone does not move", func(t *testing.T) {
		// The task log (stdout) says why; stderr only that it failed.
		refusal := "2024-05-03 09:05:00 ERROR: can't migrate local disk 'local-lvm:base-9000-disk-0/vm-8102-disk-0': can't migrate 'local-lvm:base-9000-disk-0/vm-8102-disk-0' as it's a clone of 'base-9000-disk-0'\n"
		env, _ := drifted(t, true, false, stateRead(8102, cloned, "stopped", noSnapshots),
			fake.Call{Line: "qm migrate 8102 pve2", Result: transport.Result{ExitCode: 255, Stdout: []byte(refusal), Stderr: []byte("migration aborted\n")}})
		task := newTask(t, "vm_place", nil)
		err := task.Apply(ctx, env, checked(t, task, env))
		want := "vm 8102 cannot move from node pve1 to pve2 (can't migrate 'local-lvm:base-9000-disk-0/vm-8102-disk-0' as it's a clone of 'base-9000-disk-0'): " +
			"a linked clone on local storage, or a template with linked clones, stays on its node; recreate it as a full clone on pve2: "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %v\nwant %s…", err, want)
		}
	})
	t.Run("home outside the cluster", func(t *testing.T) {
		env, _ := drifted(t, true, false)
		env.Home = "pve9"
		_, err := newTask(t, "vm_place", nil).Check(ctx, env)
		if want := "vm 8102 lives on node pve1, the config places it on pve9, which is not in the cluster of node pve1: a VM moves only within its cluster"; err == nil || err.Error() != want {
			t.Errorf("error %v\nwant %s", err, want)
		}
	})
}
