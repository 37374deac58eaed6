package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// behavior scripts what a fake task does.
type behavior struct {
	changes  []tasks.Change // successive Check results; the last repeats; none = nothing to do
	checkErr error
	applyErr error
	guest    bool       // Check asks for the guest
	probes   []string   // the task is a GuestProber; Check reads them with env.GuestProbe
	noRead   bool       // Check does not read its probes (a guest task on a stopped VM)
	put      bool       // Check and Apply try env.Node.Put
	out      string     // Apply writes this to env.Out
	logText  string     // Check logs this
	gate     func()     // called first in Check
	changed  func(bool) // called in Check with env.Changed
	// runs are commands Check runs on the node, then on the guest; an error
	// fails the check.
	nodeRuns, guestRuns []transport.Cmd
}

type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

type fakeTask struct {
	id     string
	b      *behavior
	rec    *recorder
	checks int
}

func (f *fakeTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	f.rec.add("%d check %s", vmid, f.id)
	if f.b.gate != nil {
		f.b.gate()
	}
	if f.b.changed != nil {
		f.b.changed(env.Changed)
	}
	if f.b.guest {
		if _, err := env.Guest(ctx); err != nil {
			return tasks.Change{}, err
		}
	}
	for _, p := range f.b.probes {
		if f.b.noRead {
			break
		}
		res, err := env.GuestProbe(ctx, p)
		if err != nil {
			return tasks.Change{}, err
		}
		f.rec.add("%d probe %q = %q", vmid, p, res.Stdout)
	}
	if f.b.put {
		f.rec.add("%d check put: %v", vmid, env.Node.Put(ctx, "/x", strings.NewReader("x"), transport.Attrs{Mode: 0o644}))
	}
	for _, c := range f.b.nodeRuns {
		if _, err := env.Node.Run(ctx, c); err != nil {
			return tasks.Change{}, err
		}
		f.rec.add("%d check ran on node: %s", vmid, c.Line)
	}
	for _, c := range f.b.guestRuns {
		g, err := env.Guest(ctx)
		if err != nil {
			return tasks.Change{}, err
		}
		if _, err := g.Run(ctx, c); err != nil {
			return tasks.Change{}, err
		}
		f.rec.add("%d check ran in guest: %s", vmid, c.Line)
	}
	if f.b.logText != "" {
		env.Logf("%s", f.b.logText)
	}
	if f.b.checkErr != nil {
		return tasks.Change{}, f.b.checkErr
	}
	if len(f.b.changes) == 0 {
		return tasks.Change{Action: tasks.None, Summary: f.id + " is fine"}, nil
	}
	c := f.b.changes[min(f.checks, len(f.b.changes)-1)]
	f.checks++
	return c, nil
}

func (f *fakeTask) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	f.rec.add("%d apply %s", env.VM.VMID, f.id)
	if f.b.put {
		f.rec.add("%d apply put: %v", env.VM.VMID, env.Node.Put(ctx, "/x", strings.NewReader("x"), transport.Attrs{Mode: 0o644}))
	}
	if f.b.out != "" {
		io.WriteString(env.Out, f.b.out)
	}
	return f.b.applyErr
}

type proberTask struct{ *fakeTask }

func (p proberTask) GuestProbes(*tasks.Env) []string { return p.b.probes }

// registry has one kind "t"; with: {id: X} picks behaviors[X].
func registry(behaviors map[string]*behavior, rec *recorder) tasks.Registry {
	return tasks.Registry{"t": func(params map[string]any) (tasks.Task, error) {
		id, _ := params["id"].(string)
		b := behaviors[id]
		if b == nil {
			b = &behavior{}
		}
		f := &fakeTask{id: id, b: b, rec: rec}
		if b.probes != nil {
			return proberTask{f}, nil
		}
		return f, nil
	}}
}

// fakeGuest is a Guest over the strict fake.
type fakeGuest struct {
	*fake.Transport
	mu      sync.Mutex
	waits   int
	waitErr error
}

func (g *fakeGuest) Wait(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waits++
	return g.waitErr
}

// Channel is "" until a channel answered, like fallback.Guest.
func (g *fakeGuest) Channel() string {
	if g.waitErr != nil {
		return ""
	}
	return "agent"
}

// countingNode counts Close calls on a node transport.
type countingNode struct {
	*fake.Transport
	closes *int
}

func (c countingNode) Close() error { *c.closes++; return nil }

type fixture struct {
	cfg       string // phoenix_vm_configs.json
	playbook  string // YAML
	behaviors map[string]*behavior
	vmids     []int
	all       bool
	forks     int
	dryRun    bool
	diff      bool
	guests    map[int]*fakeGuest
	noGuest   bool
	connErr   error
	nodeCalls []fake.Call // what the node expects
}

type outcome struct {
	sum      Summary
	err      error
	events   []Event
	calls    []string
	connects int
	closes   int
}

func (o outcome) types(vmid int) []string {
	var out []string
	for _, e := range o.events {
		if e.VMID == vmid && e.Type != EventLog && e.Type != EventOutput {
			out = append(out, string(e.Type)+" "+e.Task+" "+string(e.Status))
		}
	}
	return out
}

func (o outcome) taskEnds() []Event {
	var out []Event
	for _, e := range o.events {
		if e.Type == EventTaskEnd {
			out = append(out, e)
		}
	}
	return out
}

func loadConfig(t *testing.T, src string) *inventory.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "phoenix_vm_configs.json")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := inventory.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (f fixture) run(t *testing.T) outcome {
	t.Helper()
	cfg := loadConfig(t, f.cfg)
	pb, err := playbooks.Parse("test.yml", []byte(f.playbook))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	var out outcome
	var mu sync.Mutex
	node := fake.New(t, f.nodeCalls...).Named("ssh root@pve1")
	o := Options{
		Config:    cfg,
		Inventory: &inventory.Inventory{Nodes: map[string]*inventory.Node{"pve1": {Name: "pve1", PVENode: "pve1", NFSServer: "10.0.0.2"}}, DefaultNode: "pve1", GuestKnownHosts: "/tmp/gkh"},
		Playbook:  pb, VMIDs: f.vmids, All: f.all, Forks: f.forks, DryRun: f.dryRun, Diff: f.diff, NoRunLock: true,
		Registry: registry(f.behaviors, rec),
		Observer: ObserverFunc(func(e Event) { out.events = append(out.events, e) }),
		Connect: func(_ context.Context, n *inventory.Node) (transport.Transport, error) {
			mu.Lock()
			defer mu.Unlock()
			out.connects++
			if f.connErr != nil {
				return nil, f.connErr
			}
			return countingNode{node, &out.closes}, nil
		},
	}
	if !f.noGuest {
		o.GuestFor = func(vm *inventory.VM, _ *inventory.Node, n transport.Transport, _ func(string, ...any)) Guest {
			if u, ok := n.(interface{ Unwrap() transport.Transport }); !ok || u.Unwrap() != (countingNode{node, &out.closes}) {
				t.Errorf("GuestFor got node %T, want the run's node connection", n)
			}
			if g := f.guests[vm.VMID]; g != nil {
				return g
			}
			return &fakeGuest{Transport: fake.New(t).Named(fmt.Sprintf("agent vm %d", vm.VMID))}
		}
	}
	out.sum, out.err = Run(context.Background(), o)
	out.calls = rec.list()
	return out
}

const oneVM = `{"vms": [{"vmid": 8101, "name": "web01", "user_config": {"username": "phoenix", "password": "hunter22"}}]}`

const family = `{"vms": [
  {"vmid": 9000, "name": "tmpl", "is_template": true},
  {"vmid": 8101, "name": "a", "clone_from_vmid": 9000},
  {"vmid": 8102, "name": "b", "dependencies": ["8101"]},
  {"vmid": 8103, "name": "c"}
]}`

const twoSteps = "tasks:\n  - {name: a, kind: t, with: {id: a}}\n  - {name: b, kind: t, with: {id: b}}\n"

func pending(summary string) tasks.Change {
	return tasks.Change{Action: tasks.Update, Summary: summary, Diff: "-cores: 1\n+cores: 2\n", Commands: []string{"qm set 8101 --cores 2"}}
}

var none = tasks.Change{Action: tasks.None, Summary: "ok already"}

func TestApplyThenRecheck(t *testing.T) {
	out := fixture{
		cfg: oneVM, playbook: twoSteps, vmids: []int{8101},
		behaviors: map[string]*behavior{"a": {changes: []tasks.Change{pending("set cores 2"), none}}},
	}.run(t)
	if out.err != nil {
		t.Fatal(out.err)
	}
	want := []string{"8101 check a", "8101 apply a", "8101 check a", "8101 check b"}
	if !reflect.DeepEqual(out.calls, want) {
		t.Errorf("calls = %q, want %q", out.calls, want)
	}
	if got := out.sum.Totals; got != (Counts{OK: 1, Changed: 1}) {
		t.Errorf("counts = %+v", got)
	}
	ends := out.taskEnds()
	if ends[0].Status != StatusChanged || ends[0].Change.Summary != "set cores 2" || ends[0].Transport != "node" || ends[0].DryRun {
		t.Errorf("task_end a = %+v", ends[0])
	}
	if ends[0].Change.Diff != "" {
		t.Errorf("diff without --diff: %q", ends[0].Change.Diff)
	}
	if out.sum.ExitCode(true) != 0 {
		t.Errorf("exit code %d", out.sum.ExitCode(true))
	}
}

// Env.Changed tells later steps that this run changed the VM: set after
// the first apply, never in a no-op run.
func TestEnvChangedAfterAnApply(t *testing.T) {
	three := twoSteps + "  - {name: c, kind: t, with: {id: c}}\n"
	for _, tt := range []struct {
		name    string
		changes []tasks.Change // of step b
		want    []bool         // env.Changed as a, b (first check) and c saw it
	}{
		{"no-op", nil, []bool{false, false, false}},
		{"b changes", []tasks.Change{pending("set cores 2"), none}, []bool{false, false, true, true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var seen []bool
			record := func(c bool) { seen = append(seen, c) }
			out := fixture{
				cfg: oneVM, playbook: three, vmids: []int{8101},
				behaviors: map[string]*behavior{
					"a": {changed: record}, "b": {changed: record, changes: tt.changes}, "c": {changed: record},
				},
			}.run(t)
			if out.err != nil {
				t.Fatal(out.err)
			}
			if !slices.Equal(seen, tt.want) {
				t.Errorf("env.Changed seen by the checks: %v, want %v", seen, tt.want)
			}
		})
	}
}

func TestDryRunNeverApplies(t *testing.T) {
	out := fixture{
		cfg: oneVM, playbook: twoSteps, vmids: []int{8101}, dryRun: true, diff: true,
		behaviors: map[string]*behavior{
			"a": {changes: []tasks.Change{pending("set cores 2")}, put: true},
			"b": {changes: []tasks.Change{{Action: tasks.Unknown, Summary: "known after clone"}}},
		},
	}.run(t)
	if out.err != nil {
		t.Fatal(out.err)
	}
	for _, c := range out.calls {
		if strings.Contains(c, "apply") {
			t.Errorf("dry run applied: %q", out.calls)
		}
	}
	ends := out.taskEnds()
	if ends[0].Status != StatusChanged || !ends[0].DryRun || ends[0].Change.Diff != "-cores: 1\n+cores: 2\n" {
		t.Errorf("task_end a = %+v", ends[0])
	}
	if ends[1].Status != StatusChanged || ends[1].Change.Action != tasks.Unknown {
		t.Errorf("task_end b = %+v", ends[1])
	}
	if got := out.sum.ExitCode(true); got != 2 {
		t.Errorf("detailed exit code = %d, want 2", got)
	}
	if got := out.sum.ExitCode(false); got != 0 {
		t.Errorf("exit code = %d, want 0", got)
	}
}

func TestCheckIsReadOnly(t *testing.T) {
	out := fixture{
		cfg: oneVM, playbook: "tasks:\n  - {name: a, kind: t, with: {id: a}}\n", vmids: []int{8101},
		behaviors: map[string]*behavior{"a": {changes: []tasks.Change{pending("write"), none}, put: true}},
	}.run(t)
	if out.err != nil {
		t.Fatal(out.err)
	}
	want := []string{
		"8101 check a", "8101 check put: put /x: refused: check is read-only",
		"8101 apply a", "8101 apply put: <nil>",
		"8101 check a", "8101 check put: put /x: refused: check is read-only",
	}
	if !reflect.DeepEqual(out.calls, want) {
		t.Errorf("calls:\n got %q\nwant %q", out.calls, want)
	}
}

// TestCheckRunsOnlyProbes: a check may run commands marked as probes, on
// the node and in the guest; anything else is refused before it reaches
// either, and the step fails saying so. Only what Apply runs may write.
func TestCheckRunsOnlyProbes(t *testing.T) {
	probe := transport.Cmd{Line: "qm config 8101", Probe: true}
	write := transport.Cmd{Line: "qm set 8101 --cores 2"}
	for _, tt := range []struct {
		name        string
		b           behavior
		node, guest []fake.Call
		want        []string
		err         string
	}{
		{name: "probes on node and guest", b: behavior{nodeRuns: []transport.Cmd{probe}, guestRuns: []transport.Cmd{{Line: "cat /etc/fstab", Probe: true}}},
			node: []fake.Call{{Line: "qm config 8101"}}, guest: []fake.Call{{Line: "cat /etc/fstab"}},
			want: []string{"8101 check a", "8101 check ran on node: qm config 8101", "8101 check ran in guest: cat /etc/fstab"}},
		{name: "a write on the node", b: behavior{nodeRuns: []transport.Cmd{probe, write}},
			node: []fake.Call{{Line: "qm config 8101"}},
			want: []string{"8101 check a", "8101 check ran on node: qm config 8101"},
			err:  `run "qm set 8101 --cores 2": refused: check is read-only: a check runs only commands marked as probes`},
		{name: "a write in the guest", b: behavior{guestRuns: []transport.Cmd{{Line: "rm -f /etc/fstab"}}},
			want: []string{"8101 check a"},
			err:  `run "rm -f /etc/fstab": refused: check is read-only`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			b.changes = []tasks.Change{pending("set cores 2"), none}
			g := &fakeGuest{Transport: fake.New(t, tt.guest...).Named("agent vm 8101")}
			out := fixture{cfg: oneVM, playbook: "tasks:\n  - {name: a, kind: t, with: {id: a}}\n", vmids: []int{8101},
				behaviors: map[string]*behavior{"a": &b}, nodeCalls: tt.node, guests: map[int]*fakeGuest{8101: g}, dryRun: tt.err == ""}.run(t)
			if !reflect.DeepEqual(out.calls, tt.want) {
				t.Errorf("calls:\n got %q\nwant %q", out.calls, tt.want)
			}
			ends := out.taskEnds()
			switch {
			case tt.err == "" && out.err != nil:
				t.Errorf("run: %v", out.err)
			case tt.err != "" && (len(ends) != 1 || ends[0].Status != StatusFailed || !strings.Contains(ends[0].Error, tt.err)):
				t.Errorf("task_end %+v, want failed with %q", ends, tt.err)
			}
		})
	}
}

func TestReadOnlyGuestDuringCheck(t *testing.T) {
	g := &fakeGuest{Transport: fake.New(t).Named("agent vm 8101")}
	ro := &vmRun{guest: g, vm: &inventory.VM{VMID: 8101}, checking: true}
	got, err := ro.guestFn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Put(context.Background(), "/etc/x", strings.NewReader("x"), transport.Attrs{Mode: 0o644}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Put during check = %v, want ErrReadOnly", err)
	}
	ro.checking = false
	got, _ = ro.guestFn(context.Background())
	if err := got.Put(context.Background(), "/etc/x", strings.NewReader("x"), transport.Attrs{Mode: 0o644}); err != nil || string(g.Files["/etc/x"]) != "x" {
		t.Errorf("Put outside check = %v", err)
	}
	if g.waits != 1 {
		t.Errorf("guest waited %d times in one step, want once", g.waits)
	}
}

func TestConvergence(t *testing.T) {
	for _, tc := range []struct {
		name     string
		b        *behavior
		wantErr  string
		wantCall []string
	}{
		{"still pending after apply", &behavior{changes: []tasks.Change{pending("set cores 2"), pending("cores is 1, want 2")}},
			`vm 8101: step "a": did not converge: cores is 1, want 2`,
			[]string{"8101 check a", "8101 apply a", "8101 check a"}},
		{"run actions are trusted", &behavior{changes: []tasks.Change{{Action: tasks.Run, Summary: "run docker.sh"}}},
			"", []string{"8101 check a", "8101 apply a", "8101 check b"}},
		{"apply error stops the VM", &behavior{changes: []tasks.Change{pending("x")}, applyErr: errors.New(`run "mount -a": exit 32: access denied`)},
			`vm 8101: step "a": run "mount -a": exit 32: access denied`,
			[]string{"8101 check a", "8101 apply a"}},
		{"check error stops the VM", &behavior{checkErr: errors.New("qm config: exit 2")},
			`vm 8101: step "a": qm config: exit 2`, []string{"8101 check a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := fixture{cfg: oneVM, playbook: twoSteps, vmids: []int{8101}, behaviors: map[string]*behavior{"a": tc.b}}.run(t)
			if got := fmt.Sprint(out.err); tc.wantErr != "" && got != tc.wantErr || tc.wantErr == "" && out.err != nil {
				t.Errorf("err = %v, want %q", out.err, tc.wantErr)
			}
			if !reflect.DeepEqual(out.calls, tc.wantCall) {
				t.Errorf("calls = %q, want %q", out.calls, tc.wantCall)
			}
			if tc.wantErr != "" {
				if out.sum.ExitCode(false) != 1 || out.sum.Totals.Failed != 1 {
					t.Errorf("summary %+v, exit %d", out.sum.Totals, out.sum.ExitCode(false))
				}
				ends := out.taskEnds()
				if len(ends) != 1 || ends[0].Status != StatusFailed || !strings.HasSuffix(tc.wantErr, ends[0].Error) {
					t.Errorf("task_end events = %+v", ends)
				}
			}
		})
	}
}

func TestDependencyOrderAndFailure(t *testing.T) {
	t.Run("dependencies finish first", func(t *testing.T) {
		out := fixture{cfg: family, playbook: twoSteps, all: true, forks: 5}.run(t)
		if out.err != nil {
			t.Fatal(out.err)
		}
		pos := func(typ EventType, vmid int) int {
			return slices.IndexFunc(out.events, func(e Event) bool { return e.Type == typ && e.VMID == vmid })
		}
		for _, edge := range [][2]int{{9000, 8101}, {8101, 8102}} {
			if pos(EventVMStart, edge[1]) < pos(EventVMEnd, edge[0]) {
				t.Errorf("vm %d started before vm %d ended", edge[1], edge[0])
			}
		}
		if len(out.sum.VMs) != 4 || out.sum.Totals.OK != 8 {
			t.Errorf("summary %+v", out.sum)
		}
		if out.connects != 1 || out.closes != 1 {
			t.Errorf("node connected %d times and closed %d times, want once each for the whole run", out.connects, out.closes)
		}
	})
	t.Run("a failed dependency fails its dependents without running them", func(t *testing.T) {
		out := fixture{cfg: family, playbook: twoSteps, all: true, forks: 1,
			behaviors: map[string]*behavior{"a": {checkErr: errors.New("boom")}}}.run(t)
		// With forks 1 and every "a" failing, each VM that runs fails at "a".
		want := `vm 9000: step "a": boom` + "\n" + `vm 8101: dependency 9000 failed` + "\n" +
			`vm 8102: dependency 8101 failed` + "\n" + `vm 8103: step "a": boom`
		if fmt.Sprint(out.err) != want {
			t.Errorf("err:\n%v\nwant:\n%s", out.err, want)
		}
		for _, vmid := range []int{8101, 8102} {
			if got := out.types(vmid); !reflect.DeepEqual(got, []string{"vm_end  failed"}) {
				t.Errorf("vm %d events = %q, want only a failed vm_end", vmid, got)
			}
		}
		if got := out.types(8103); !reflect.DeepEqual(got, []string{"vm_start  ", "task_start a ", "task_end a failed", "vm_end  failed"}) {
			t.Errorf("vm 8103 events = %q (b must not run after a failed)", got)
		}
		if out.sum.Totals.Failed != 4 {
			t.Errorf("failed = %d, want 4 (2 steps, 2 dependents)", out.sum.Totals.Failed)
		}
	})
	t.Run("teardown: dependents finish first, a failure keeps what they depend on", func(t *testing.T) {
		out := fixture{cfg: family, playbook: "teardown: true\n" + twoSteps, all: true, forks: 5}.run(t)
		if out.err != nil {
			t.Fatal(out.err)
		}
		pos := func(typ EventType, vmid int) int {
			return slices.IndexFunc(out.events, func(e Event) bool { return e.Type == typ && e.VMID == vmid })
		}
		for _, edge := range [][2]int{{8102, 8101}, {8101, 9000}} {
			if pos(EventVMStart, edge[1]) < pos(EventVMEnd, edge[0]) {
				t.Errorf("vm %d started before vm %d ended", edge[1], edge[0])
			}
		}
		failed := fixture{cfg: family, playbook: "teardown: true\n" + twoSteps, vmids: []int{8101, 9000}, forks: 1,
			behaviors: map[string]*behavior{"a": {checkErr: errors.New("boom")}}}.run(t)
		if want := `vm 8101: step "a": boom` + "\n" + `vm 9000: dependent vm 8101 failed`; fmt.Sprint(failed.err) != want {
			t.Errorf("err:\n%v\nwant:\n%s", failed.err, want)
		}
	})
	t.Run("only selected VMs run; an unselected dependency is not waited for", func(t *testing.T) {
		out := fixture{cfg: family, playbook: twoSteps, vmids: []int{8102, 8101}}.run(t)
		if out.err != nil {
			t.Fatal(out.err)
		}
		var ran []int
		for _, r := range out.sum.VMs {
			ran = append(ran, r.VMID)
		}
		if !reflect.DeepEqual(ran, []int{8101, 8102}) {
			t.Errorf("ran %v, want [8101 8102] in dependency order", ran)
		}
	})
	t.Run("unknown vmid", func(t *testing.T) {
		out := fixture{cfg: family, playbook: twoSteps, vmids: []int{7777}}.run(t)
		if out.err == nil || !strings.Contains(out.err.Error(), "vm 7777 is not defined") || len(out.events) != 0 {
			t.Errorf("err = %v, events %d", out.err, len(out.events))
		}
	})
	t.Run("node unreachable fails its VMs", func(t *testing.T) {
		out := fixture{cfg: family, playbook: twoSteps, vmids: []int{8101, 8103}, connErr: transport.ErrUnreachable}.run(t)
		want := "vm 8101: node pve1: unreachable\nvm 8103: node pve1: unreachable"
		if fmt.Sprint(out.err) != want || out.connects != 1 {
			t.Errorf("err = %v (connects %d), want %q", out.err, out.connects, want)
		}
	})
}

func TestForks(t *testing.T) {
	cfg := `{"vms": [{"vmid": 101, "name": "a"}, {"vmid": 102, "name": "b"}, {"vmid": 103, "name": "c"}, {"vmid": 104, "name": "d"}]}`
	var mu sync.Mutex
	running, peak, started := 0, 0, 0
	release := make(chan struct{})
	gate := func() {
		mu.Lock()
		running++
		started++
		peak = max(peak, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
	}
	done := make(chan outcome)
	go func() {
		done <- fixture{cfg: cfg, playbook: "tasks:\n  - {name: a, kind: t, with: {id: a}}\n", all: true, forks: 2,
			behaviors: map[string]*behavior{"a": {gate: gate}}}.run(t)
	}()
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a speed assertion
	for {
		mu.Lock()
		n := started
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d VMs started in parallel, want 2", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // would let a third VM start if the limit leaked
	mu.Lock()
	if started != 2 {
		t.Errorf("%d VMs started with forks 2", started)
	}
	mu.Unlock()
	close(release)
	out := <-done
	if out.err != nil || peak != 2 || len(out.sum.VMs) != 4 {
		t.Errorf("err %v, peak %d, vms %d; want no error, peak 2, 4 VMs", out.err, peak, len(out.sum.VMs))
	}
}

const probes = `tasks:
  - {name: wait, kind: t, with: {id: wait}}
  - {name: p1, kind: t, with: {id: p1}}
  - {name: skipped, kind: t, when: "${vm.nope}", with: {id: p3}}
  - {name: p2, kind: t, with: {id: p2}}
`

func TestGuestProbesInOneBatch(t *testing.T) {
	lines := []string{"cat /etc/fstab", "dpkg-query -W nfs-common", "sha256sum /etc/motd"}
	behaviors := func(p1 []tasks.Change) map[string]*behavior {
		return map[string]*behavior{
			"wait": {guest: true},
			"p1":   {probes: lines[:2], changes: p1},
			"p2":   {probes: lines[1:]},
			"p3":   {probes: []string{"never probed"}},
		}
	}
	t.Run("converged: one batch for all remaining probes", func(t *testing.T) {
		g := &fakeGuest{Transport: fake.New(t, fake.BatchParallel(lines, fake.Out("fstab"), fake.Out("ii"), fake.Fail(1, "no file"))).Named("agent vm 8101")}
		out := fixture{cfg: oneVM, playbook: probes, vmids: []int{8101}, behaviors: behaviors(nil), guests: map[int]*fakeGuest{8101: g}}.run(t)
		if out.err != nil {
			t.Fatal(out.err)
		}
		want := []string{
			"8101 check wait",
			"8101 check p1", `8101 probe "cat /etc/fstab" = "fstab"`, `8101 probe "dpkg-query -W nfs-common" = "ii"`,
			"8101 check p2", `8101 probe "dpkg-query -W nfs-common" = "ii"`, `8101 probe "sha256sum /etc/motd" = ""`,
		}
		if !reflect.DeepEqual(out.calls, want) {
			t.Errorf("calls:\n got %q\nwant %q", out.calls, want)
		}
		for _, e := range out.taskEnds() {
			if e.Task != "skipped" && e.Transport != "agent" {
				t.Errorf("step %s transport %q, want agent", e.Task, e.Transport)
			}
		}
		if g.waits != 2 {
			t.Errorf("guest waited %d times, want 2: wait and p1 (the batch); p2 reads the batch only", g.waits)
		}
	})
	t.Run("after an apply the remaining probes are batched again", func(t *testing.T) {
		g := &fakeGuest{Transport: fake.New(t,
			fake.BatchParallel(lines, fake.Out("old"), fake.Out(""), fake.Out("x")),
			fake.BatchParallel(lines, fake.Out("new"), fake.Out("ii"), fake.Out("x")),
		).Named("agent vm 8101")}
		out := fixture{cfg: oneVM, playbook: probes, vmids: []int{8101}, guests: map[int]*fakeGuest{8101: g},
			behaviors: behaviors([]tasks.Change{pending("mount"), none})}.run(t)
		if out.err != nil {
			t.Fatal(out.err)
		}
		if !slices.Contains(out.calls, `8101 probe "cat /etc/fstab" = "new"`) {
			t.Errorf("re-check did not see fresh probes: %q", out.calls)
		}
	})
	t.Run("the batch never waits for a guest nobody reached yet", func(t *testing.T) {
		g := &fakeGuest{Transport: fake.New(t,
			fake.Call{Line: "cat /etc/fstab", Result: fake.Out("fstab")},
			fake.Call{Line: "dpkg-query -W nfs-common", Result: fake.Out("ii")},
			fake.BatchParallel(lines[1:], fake.Out("ii"), fake.Out("x")),
		).Named("agent vm 8101")}
		b := behaviors(nil)
		b["wait"] = &behavior{}
		out := fixture{cfg: oneVM, playbook: probes, vmids: []int{8101}, behaviors: b, guests: map[int]*fakeGuest{8101: g}}.run(t)
		if out.err != nil || g.waits != 2 {
			t.Errorf("err %v, waits %d; want the wait of p1 (probing alone) and of p2 (batched)", out.err, g.waits)
		}
	})
}

func TestProberThatNeverReachedTheGuestRanOnTheNode(t *testing.T) {
	g := &fakeGuest{Transport: fake.New(t).Named("agent vm 8101")}
	out := fixture{cfg: oneVM, vmids: []int{8101}, dryRun: true, guests: map[int]*fakeGuest{8101: g},
		playbook:  "tasks:\n  - {name: p, kind: t, with: {id: p}}\n",
		behaviors: map[string]*behavior{"p": {probes: []string{"cat /etc/fstab"}, noRead: true, changes: []tasks.Change{{Action: tasks.Unknown}}}},
	}.run(t)
	if ends := out.taskEnds(); out.err != nil || len(ends) != 1 || ends[0].Transport != "node" || g.waits != 0 {
		t.Errorf("err %v, events %+v, waits %d; want transport node and no wait", out.err, ends, g.waits)
	}
}

func TestEventsJSONLines(t *testing.T) {
	var buf bytes.Buffer
	f := fixture{
		cfg: oneVM, vmids: []int{8101}, diff: true,
		playbook: "tasks:\n  - {name: a, kind: t, with: {id: a}}\n  - {name: g, kind: t, with: {id: g}}\n  - {name: s, kind: t, when: \"${vm.nope}\"}\n",
		behaviors: map[string]*behavior{
			"a": {changes: []tasks.Change{pending("set cores 2"), none}, out: "line 1\npartial"},
			"g": {guest: true, changes: []tasks.Change{{Action: tasks.None, Summary: "done", Details: "status: done\ndetail: x"}}},
		},
	}
	out := f.run(t)
	if out.err != nil {
		t.Fatal(out.err)
	}
	enc := JSONLines{W: &buf}
	for _, e := range out.events {
		enc.OnEvent(e)
	}
	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if !strings.HasPrefix(line, `{"event":`) {
			t.Errorf("line does not start with the event: %s", line)
		}
		got = append(got, m)
	}
	var seq []string
	for _, m := range got {
		seq = append(seq, m["event"].(string))
	}
	wantSeq := []string{"run_start", "vm_start", "task_start", "output", "output", "task_end", "task_start", "task_end", "task_start", "task_end", "vm_end", "summary"}
	if !reflect.DeepEqual(seq, wantSeq) {
		t.Fatalf("events %q\nwant %q", seq, wantSeq)
	}
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		slices.Sort(k)
		return k
	}
	for _, tc := range []struct {
		i    int
		keys []string
		vals map[string]any
	}{
		{0, []string{"dry_run", "event", "forks", "playbook", "vms"}, map[string]any{"playbook": "test", "vms": []any{8101.0}, "forks": 5.0}},
		{3, []string{"event", "stream", "task", "text", "vmid"}, map[string]any{"text": "line 1", "task": "a", "stream": "stdout"}},
		{4, []string{"event", "stream", "task", "text", "vmid"}, map[string]any{"text": "partial"}},
		{5, []string{"action", "changed", "commands", "diff", "duration_ms", "event", "kind", "status", "summary", "task", "transport", "vmid"},
			map[string]any{"vmid": 8101.0, "task": "a", "kind": "t", "status": "changed", "changed": true, "action": "update",
				"summary": "set cores 2", "diff": "-cores: 1\n+cores: 2\n", "transport": "node"}},
		{7, []string{"action", "changed", "details", "duration_ms", "event", "kind", "status", "summary", "task", "transport", "vmid"},
			map[string]any{"status": "ok", "changed": false, "details": "status: done\ndetail: x", "transport": "agent"}},
		{9, []string{"changed", "duration_ms", "event", "kind", "status", "summary", "task", "transport", "vmid"},
			map[string]any{"status": "skipped", "summary": "nope is not set", "transport": ""}},
		{10, []string{"changed", "duration_ms", "event", "failed", "ok", "skipped", "status", "vmid"},
			map[string]any{"status": "ok", "ok": 1.0, "changed": 1.0, "skipped": 1.0, "failed": 0.0}},
		{11, []string{"changed", "duration_ms", "event", "failed", "ok", "skipped"},
			map[string]any{"ok": 1.0, "changed": 1.0, "failed": 0.0, "skipped": 1.0}},
	} {
		if k := keys(got[tc.i]); !reflect.DeepEqual(k, tc.keys) {
			t.Errorf("event %d (%s) keys %q, want %q", tc.i, seq[tc.i], k, tc.keys)
		}
		for k, v := range tc.vals {
			if !reflect.DeepEqual(got[tc.i][k], v) {
				t.Errorf("event %d (%s) %s = %#v, want %#v", tc.i, seq[tc.i], k, got[tc.i][k], v)
			}
		}
	}
}

func TestSecretsNeverInEvents(t *testing.T) {
	out := fixture{
		cfg: oneVM, vmids: []int{8101}, playbook: "tasks:\n  - {name: a, kind: t, with: {id: a}}\n",
		behaviors: map[string]*behavior{"a": {
			logText:  "using password hunter22",
			checkErr: errors.New(`run "qm set 8101 --cipassword hunter22": exit 255: bad`),
		}},
	}.run(t)
	var buf bytes.Buffer
	for _, e := range out.events {
		JSONLines{W: &buf}.OnEvent(e)
	}
	(&Text{W: &buf, Verbose: 2}).OnEvent(out.events[len(out.events)-2])
	if strings.Contains(buf.String(), "hunter22") || strings.Contains(out.err.Error(), "hunter22") {
		t.Errorf("password leaked:\n%s\nerr: %v", buf.String(), out.err)
	}
	if !strings.Contains(buf.String(), "--cipassword ********") {
		t.Errorf("masked error missing:\n%s", buf.String())
	}
}

func TestNoGuestConfigured(t *testing.T) {
	out := fixture{cfg: oneVM, vmids: []int{8101}, noGuest: true, playbook: "tasks:\n  - {name: g, kind: t, with: {id: g}}\n",
		behaviors: map[string]*behavior{"g": {guest: true}}}.run(t)
	if fmt.Sprint(out.err) != `vm 8101: step "g": no way into the guest is configured` {
		t.Errorf("err = %v", out.err)
	}
}

func TestGuestWaitErrorIsTheStepError(t *testing.T) {
	g := &fakeGuest{Transport: fake.New(t).Named("agent vm 8101"), waitErr: errors.New("guest unreachable after 300s: agent: not running; ssh: refused")}
	out := fixture{cfg: oneVM, vmids: []int{8101}, playbook: "tasks:\n  - {name: g, kind: t, with: {id: g}}\n",
		behaviors: map[string]*behavior{"g": {guest: true}}, guests: map[int]*fakeGuest{8101: g}}.run(t)
	if fmt.Sprint(out.err) != `vm 8101: step "g": guest unreachable after 300s: agent: not running; ssh: refused` {
		t.Errorf("err = %v", out.err)
	}
	if ends := out.taskEnds(); len(ends) != 1 || ends[0].Transport != "none" {
		t.Errorf("task_end = %+v, want transport none", ends)
	}
}

func TestRenderErrorStopsBeforeAnything(t *testing.T) {
	out := fixture{cfg: oneVM, vmids: []int{8101}, playbook: "tasks:\n  - {name: a, kind: nope}\n"}.run(t)
	if out.err == nil || !strings.HasPrefix(out.err.Error(), `vm 8101: test.yml:2: step "a": unknown kind "nope"`) || len(out.events) != 0 || out.connects != 0 {
		t.Errorf("err = %v, %d events, %d connects", out.err, len(out.events), out.connects)
	}
}

func TestExitCode(t *testing.T) {
	failed := []VMResult{{VMID: 1, Err: errors.New("x")}}
	for _, tc := range []struct {
		name     string
		s        Summary
		detailed bool
		want     int
	}{
		{"clean", Summary{}, true, 0},
		{"applied changes", Summary{Totals: Counts{Changed: 3}}, true, 0},
		{"dry run, nothing pending", Summary{DryRun: true, Totals: Counts{OK: 3}}, true, 0},
		{"dry run, pending", Summary{DryRun: true, Totals: Counts{Changed: 1}}, true, 2},
		{"dry run, pending, not detailed", Summary{DryRun: true, Totals: Counts{Changed: 1}}, false, 0},
		{"failure wins", Summary{DryRun: true, Totals: Counts{Changed: 1}, VMs: failed}, true, 1},
	} {
		if got := tc.s.ExitCode(tc.detailed); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// deadlineGuest records whether each command it runs has a deadline.
type deadlineGuest struct {
	*fakeGuest
	bounded []bool
}

func (d *deadlineGuest) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	_, ok := ctx.Deadline()
	d.bounded = append(d.bounded, ok)
	return d.fakeGuest.Run(ctx, cmd)
}

// The probe batch is bounded: a probe that hangs (a dead NFS server under a
// probed path) fails the batch, not the run.
func TestGuestProbeBatchIsBounded(t *testing.T) {
	lines := []string{"test -d /mnt/data"}
	g := &deadlineGuest{fakeGuest: &fakeGuest{Transport: fake.New(t, fake.BatchParallel(lines, fake.Out(""))).Named("agent vm 8101")}}
	cfg := loadConfig(t, oneVM)
	pb, err := playbooks.Parse("test.yml", []byte("tasks:\n  - {name: w, kind: t, with: {id: w}}\n  - {name: p, kind: t, with: {id: p}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	_, err = Run(context.Background(), Options{
		Config: cfg, Playbook: pb, VMIDs: []int{8101},
		Inventory: &inventory.Inventory{Nodes: map[string]*inventory.Node{"pve1": {Name: "pve1"}}, DefaultNode: "pve1"},
		Registry:  registry(map[string]*behavior{"w": {guest: true}, "p": {probes: lines}}, rec),
		NoRunLock: true,
		Connect:   func(context.Context, *inventory.Node) (transport.Transport, error) { return fake.New(t), nil },
		GuestFor:  func(*inventory.VM, *inventory.Node, transport.Transport, func(string, ...any)) Guest { return g },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.bounded, []bool{true}) {
		t.Errorf("batch deadlines %v, want [true]", g.bounded)
	}
}

// A pending change reads in the future in a dry run and in the past once
// applied.
func TestSummaryTense(t *testing.T) {
	worded := tasks.Change{Action: tasks.Update, Summary: "will set cores 2", Done: "set cores 2"}
	for _, dryRun := range []bool{true, false} {
		out := fixture{
			cfg: oneVM, playbook: "tasks:\n  - {name: a, kind: t, with: {id: a}}\n", vmids: []int{8101}, dryRun: dryRun,
			behaviors: map[string]*behavior{"a": {changes: []tasks.Change{worded, none}}},
		}.run(t)
		want := "set cores 2"
		if dryRun {
			want = "will set cores 2"
		}
		if ends := out.taskEnds(); len(ends) != 1 || ends[0].Status != StatusChanged || ends[0].Change.Summary != want {
			t.Errorf("dry run %v: task_end %+v, want summary %q", dryRun, ends, want)
		}
	}
}

// TestInterruptedRun: Ctrl-C while a step runs. That step fails as
// interrupted, the VM waiting for a fork never starts, and the run exits 130
// with its summary saying so.
func TestInterruptedRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	cfg := loadConfig(t, family)
	pb, err := playbooks.Parse("test.yml", []byte(twoSteps))
	if err != nil {
		t.Fatal(err)
	}
	behaviors := map[string]*behavior{"a": {gate: cancel, checkErr: fmt.Errorf("run %q: cancelled: %w", "qm clone 9000 8101", context.Canceled)}}
	var events []Event
	sum, err := Run(ctx, Options{
		Config:    cfg,
		Inventory: &inventory.Inventory{Nodes: map[string]*inventory.Node{"pve1": {Name: "pve1"}}, DefaultNode: "pve1"},
		Playbook:  pb, VMIDs: []int{8101, 8103}, Forks: 1,
		Registry:  registry(behaviors, rec),
		Observer:  ObserverFunc(func(e Event) { events = append(events, e) }),
		Connect:   func(context.Context, *inventory.Node) (transport.Transport, error) { return fake.New(t), nil },
		NoRunLock: true,
	})
	if !sum.Interrupted || sum.ExitCode(false) != 130 {
		t.Errorf("summary interrupted=%v exit %d, want true and 130", sum.Interrupted, sum.ExitCode(false))
	}
	if err == nil {
		t.Fatal("an interrupted run returned no error")
	}
	if got := sum.VMs[0].Err.Error(); got != `vm 8101: step "a": interrupted: run "qm clone 9000 8101": cancelled: context canceled` {
		t.Errorf("vm 8101: %s", got)
	}
	if got := sum.VMs[1].Err.Error(); got != "vm 8103: interrupted before it started" {
		t.Errorf("vm 8103: %s", got)
	}
	if calls := rec.list(); !slices.Equal(calls, []string{"8101 check a"}) {
		t.Errorf("calls = %q: nothing runs after the interrupt", calls)
	}
	last := events[len(events)-1]
	if last.Type != EventSummary || !last.Interrupted {
		t.Fatalf("last event %+v", last)
	}
	b, _ := json.Marshal(last)
	if !strings.HasSuffix(string(b), `"failed_vms":[8101,8103],"interrupted":true}`) {
		t.Errorf("json summary %s", b)
	}
	var text bytes.Buffer
	(&Text{W: &text}).OnEvent(last)
	if !strings.Contains(text.String(), "; interrupted: steps were stopped, run again to finish") {
		t.Errorf("text summary %q", text.String())
	}
}
