package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/tasks/pve"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// world is one VM as the tests see it: a node, a guest, and what the tasks
// did outside them (pins, output).
type world struct {
	t        *testing.T
	node     *fake.Transport
	guest    *fake.Transport
	env      *tasks.Env
	status   string // "running", "stopped", "" (missing)
	features map[string]string
	out      bytes.Buffer

	mu      sync.Mutex
	pins    map[string]ssh.PublicKey // alias → key
	forgets []string

	checking bool // a task is checking: only probes may run
}

func newWorld(t *testing.T) *world {
	w := &world{
		t:        t,
		node:     fake.New(t).Named("node"),
		guest:    fake.New(t).Named("agent vm 8101"),
		status:   "running",
		features: map[string]string{},
		pins:     map[string]ssh.PublicKey{},
	}
	w.env = &tasks.Env{
		VM:              &inventory.VM{VMID: 8101, AgentTimeoutSeconds: 300},
		Node:            bounded{w.node, t, &w.checking},
		NFSServer:       "10.0.0.2",
		Out:             &w.out,
		GuestKnownHosts: t.TempDir() + "/known_hosts",
		Guest:           func(context.Context) (tasks.Guest, error) { return bounded{w.guest, t, &w.checking}, nil },
	}
	return w
}

// bounded fails the test on a command nothing bounds (no Timeout, no
// deadline on its context): a hung guest or node must end the step. While a
// task checks, it also fails a command not marked as a probe, as the
// runner refuses them.
type bounded struct {
	*fake.Transport
	t        *testing.T
	checking *bool
}

func (b bounded) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if _, ok := ctx.Deadline(); cmd.Timeout <= 0 && !ok {
		b.t.Errorf("%s: unbounded command: %s", b.Name(), cmd.Line)
	}
	if *b.checking && !cmd.Probe {
		b.t.Errorf("%s: a check ran a command not marked as a probe: %s", b.Name(), cmd.Line)
		return transport.Result{}, transport.ErrReadOnly
	}
	return b.Transport.Run(ctx, cmd)
}

// checked marks the world as checking while its task checks.
type checked struct {
	tasks.Task
	w *world
}

func (c checked) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	c.w.checking = true
	defer func() { c.w.checking = false }()
	return c.Task.Check(ctx, env)
}

// inner is the task w.task wrapped.
func inner(t tasks.Task) tasks.Task {
	switch c := t.(type) {
	case checked:
		return c.Task
	case checkedProber:
		return c.checked.Task
	}
	return t
}

// checkedProber is checked for a task that lists guest probes.
type checkedProber struct {
	checked
	tasks.GuestProber
}

// deps are the test doubles of the other packages and the clock.
func (w *world) deps() deps {
	return deps{
		state: func(_ context.Context, env *tasks.Env) (*pve.State, error) {
			return &pve.State{VMID: env.VM.VMID, Exists: w.status != "", Status: w.status}, nil
		},
		feature: func(name string, _ []string) ([]byte, error) {
			s, ok := w.features[name]
			if !ok {
				return nil, fmt.Errorf("feature %q: not found", name)
			}
			return []byte(s), nil
		},
		pin: func(file, alias string, key ssh.PublicKey) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			if file != w.env.GuestKnownHosts {
				w.t.Errorf("pin in %s, want %s", file, w.env.GuestKnownHosts)
			}
			w.pins[alias] = key
			return nil
		},
		forget: func(file, alias string) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.forgets = append(w.forgets, alias)
			return nil
		},
		now:  func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC) },
		poll: time.Millisecond,
	}
}

// task builds kind through the registry, as the runner does.
func (w *world) task(kind string, params map[string]any) tasks.Task {
	w.t.Helper()
	reg := tasks.Registry{}
	w.deps().register(reg)
	f, ok := reg[kind]
	if !ok {
		w.t.Fatalf("kind %s not registered", kind)
	}
	task, err := f(params)
	if err != nil {
		w.t.Fatalf("%s: %v", kind, err)
	}
	if p, ok := task.(tasks.GuestProber); ok {
		return checkedProber{checked{task, w}, p}
	}
	return checked{task, w}
}

// probes expects the runner's one batched round trip for task's probes,
// answered with results, and runs it the way the runner does.
func (w *world) probes(task tasks.Task, results ...transport.Result) {
	w.t.Helper()
	lines := task.(tasks.GuestProber).GuestProbes(w.env)
	if len(lines) != len(results) {
		w.t.Fatalf("%d probe lines, %d results given: %q", len(lines), len(results), lines)
	}
	w.guest.Expect(fake.BatchParallel(lines, results...))
	res, err := transport.BatchParallel(context.Background(), w.guest, lines)
	if err != nil {
		w.t.Fatal(err)
	}
	for i, l := range lines {
		w.env.Store("guest-probe:"+l, res[i])
	}
}

// check runs Check and fails the test on an error.
func (w *world) check(task tasks.Task) tasks.Change {
	w.t.Helper()
	c, err := task.Check(context.Background(), w.env)
	if err != nil {
		w.t.Fatalf("check: %v", err)
	}
	return c
}

// apply runs Apply the way the runner does: only for a pending change, then
// forgets the guest facts.
func (w *world) apply(task tasks.Task, c tasks.Change) error {
	w.t.Helper()
	if !c.Pending() {
		w.t.Fatalf("apply of a change that is not pending: %+v", c)
	}
	err := task.Apply(context.Background(), w.env, c)
	w.env.Forget("guest")
	return err
}

func exit(code int, stdout, stderr string) transport.Result {
	return transport.Result{ExitCode: code, Stdout: []byte(stdout), Stderr: []byte(stderr)}
}

func sum(b string) string {
	s := sha256.Sum256([]byte(b))
	return hex.EncodeToString(s[:])
}
