package runner

import (
	"context"
	"reflect"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// A step that says the rest is not needed (a template that is built) ends
// the VM's playbook there: the later steps are skipped with its reason.
func TestSkipRest(t *testing.T) {
	built := tasks.Change{Action: tasks.None, Summary: "template 9000 is built", SkipRest: "template 9000 is built"}
	playbook := twoSteps + "  - {name: c, kind: t, when: \"${vm.nope}\", with: {id: c}}\n"
	for _, dryRun := range []bool{false, true} {
		out := fixture{cfg: oneVM, playbook: playbook, vmids: []int{8101}, dryRun: dryRun,
			behaviors: map[string]*behavior{"a": {changes: []tasks.Change{built}}}}.run(t)
		if out.err != nil {
			t.Fatal(out.err)
		}
		if want := []string{"8101 check a"}; !reflect.DeepEqual(out.calls, want) {
			t.Errorf("dry run %v: calls = %q, want %q", dryRun, out.calls, want)
		}
		ends := out.taskEnds()
		if len(ends) != 3 || ends[1].Status != StatusSkipped || ends[1].Change.Summary != "template 9000 is built" ||
			ends[2].Status != StatusSkipped || ends[2].Change.Summary == "template 9000 is built" {
			t.Errorf("dry run %v: task_end events = %+v", dryRun, ends)
		}
		if got := out.sum.Totals; got != (Counts{OK: 1, Skipped: 2}) {
			t.Errorf("dry run %v: counts = %+v", dryRun, got)
		}
	}
}

// runFacts are what the runner tells a task about the run.
type runFacts struct {
	InRun            []int
	RebuildTemplates bool
}

// envTask records the run facts each VM's task saw.
type envTask struct {
	seen map[int]runFacts
}

func (e *envTask) Check(_ context.Context, env *tasks.Env) (tasks.Change, error) {
	e.seen[env.VM.VMID] = runFacts{InRun: env.InRun, RebuildTemplates: env.RebuildTemplates}
	return tasks.Change{Action: tasks.None, Summary: "ok"}, nil
}

func (e *envTask) Apply(context.Context, *tasks.Env, tasks.Change) error { return nil }

// WithDeps adds the selected VMs' dependencies to the run, in dependency
// order; every task learns the run's VMs and whether templates may be
// rebuilt.
func TestWithDepsAndRunFacts(t *testing.T) {
	rec := &envTask{seen: map[int]runFacts{}}
	pb, err := playbooks.Parse("test.yml", []byte("tasks:\n  - {name: a, kind: e, with: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	node := fake.New(t)
	for _, tc := range []struct {
		deps bool
		want []int
	}{{false, []int{8102}}, {true, []int{9000, 8101, 8102}}} {
		sum, err := Run(context.Background(), Options{
			Config:    loadConfig(t, family),
			Inventory: &inventory.Inventory{Nodes: map[string]*inventory.Node{"pve1": {Name: "pve1"}}, DefaultNode: "pve1"},
			Playbook:  pb, VMIDs: []int{8102}, WithDeps: tc.deps, RebuildTemplates: true, Forks: 1,
			Registry:  tasks.Registry{"e": func(map[string]any) (tasks.Task, error) { return rec, nil }},
			Connect:   func(context.Context, *inventory.Node) (transport.Transport, error) { return node, nil },
			NoRunLock: true, // the node is a strict fake
		})
		if err != nil {
			t.Fatal(err)
		}
		var ran []int
		for _, r := range sum.VMs {
			ran = append(ran, r.VMID)
		}
		if !reflect.DeepEqual(ran, tc.want) {
			t.Errorf("with deps %v: ran %v, want %v", tc.deps, ran, tc.want)
		}
		for _, id := range tc.want {
			if got := rec.seen[id]; !reflect.DeepEqual(got.InRun, tc.want) || !got.RebuildTemplates {
				t.Errorf("with deps %v: vm %d saw InRun %v, RebuildTemplates %v", tc.deps, id, got.InRun, got.RebuildTemplates)
			}
		}
	}
}
