package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"strings"
	"sync"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// ErrReadOnly is returned for a write attempted during Check.
var ErrReadOnly = transport.ErrReadOnly

// vmRun is the state of one VM during a run. Its steps run one after the
// other in one goroutine.
type vmRun struct {
	r       *run
	vm      *inventory.VM
	steps   []playbooks.ResolvedStep
	secrets []string
	env     *tasks.Env
	node    transport.Transport
	// nodeLost says what broke node's connection, nil while it holds.
	nodeLost func() error
	guest    Guest
	out      *lineWriter

	cur       string // the step running, for events
	checking  bool   // in Check: writes are refused
	usedGuest bool   // the current step asked for the guest
	waited    bool   // the guest's Wait returned ok in this step
	// guestUp: the guest answered once; the probe batch only rides an
	// open channel, it never is the one that waits for a booting guest.
	guestUp     bool
	probesFresh bool // the probe batch is still valid (nothing applied since)
}

// runVM runs the steps of one VM; the first failure stops it.
func (r *run) runVM(ctx context.Context, vm *inventory.VM, steps []playbooks.ResolvedStep) VMResult {
	start := time.Now()
	r.emit(Event{Type: EventVMStart, VMID: vm.VMID, VMName: vm.Name})
	v := &vmRun{r: r, vm: vm, steps: steps}
	if pw := vm.UserConfig.Password.Reveal(); pw != "" {
		v.secrets = []string{pw}
	}
	res := VMResult{VMID: vm.VMID}
	err := v.run(ctx, &res.Counts)
	res.Duration = time.Since(start)
	end := Event{Type: EventVMEnd, VMID: vm.VMID, Status: StatusOK, Counts: res.Counts, Duration: res.Duration}
	if err != nil {
		res.Err = errors.New(v.mask(err.Error()))
		end.Status, end.Error = StatusFailed, res.Err.Error()
	}
	r.emit(end)
	return res
}

func (v *vmRun) run(ctx context.Context, counts *Counts) error {
	fail := func(err error) error {
		counts.Failed++
		return fmt.Errorf("vm %d: %w", v.vm.VMID, err)
	}
	if ctx.Err() != nil {
		return fail(fmt.Errorf("%w before it started", errInterrupted))
	}
	o := v.r.o
	home := v.r.homes[v.vm.VMID]
	node, scope, err := v.r.placer.Place(ctx, home, v.vm)
	if err != nil {
		return fail(err)
	}
	if !o.DryRun && !o.NoRunLock {
		// The lock is on the VM's home, wherever it lives: every run that
		// works on the VM agrees on it. A dry run changes nothing, so it
		// neither waits for nor blocks a run.
		if _, err := v.r.nodes.get(ctx, home); err != nil {
			return fail(err)
		}
		locks := v.r.nodes.lockHolder(home)
		if err := locks.lock(ctx, v.vm.VMID, v.r.owner); err != nil {
			return fail(err)
		}
		defer locks.unlock(v.vm.VMID)
	}
	v.out = &lineWriter{emit: func(line string) {
		v.r.emit(Event{Type: EventOutput, VMID: v.vm.VMID, Task: v.cur, Stream: "stdout", Text: v.mask(line)})
	}}
	v.env = &tasks.Env{
		VM: v.vm, Config: o.Config, Home: home.Name, Migrate: o.Migrate, NFSServer: home.NFSServer,
		Guest: v.guestFn, Out: v.out, Log: v.log, DryRun: o.DryRun,
		FeatureDirs: o.FeatureDirs, GuestKnownHosts: o.GuestKnownHosts,
		InRun: v.r.ids, RebuildTemplates: o.RebuildTemplates,
	}
	if scope != nil {
		v.env.Cluster = scope
	}
	if err := v.useNode(ctx, node); err != nil {
		return fail(err)
	}
	defer func() { closeGuest(v.guest) }()
	if node != home {
		v.log("lives on node %s; the config places it on %s", node.Name, home.Name)
	}
	for i := range v.steps {
		status, err := v.step(ctx, i)
		counts.count(status)
		if err != nil {
			return fmt.Errorf("vm %d: step %q: %w", v.vm.VMID, v.steps[i].Name, err)
		}
	}
	return nil
}

// useNode points the VM's node commands and its guest's way in at node,
// where the VM lives (at the start, and after a migration).
func (v *vmRun) useNode(ctx context.Context, node *inventory.Node) error {
	nt, err := v.r.nodes.get(ctx, node)
	if err != nil {
		return err
	}
	v.node = nt
	v.nodeLost = func() error {
		if err := v.r.nodes.lostErr(node.Name); err != nil {
			// The guest's channels run through the node: none comes back.
			return fmt.Errorf("node %s lost: %w", node.Name, err)
		}
		return nil
	}
	v.env.Node, v.env.NodeName, v.env.PVENode = nt, node.Name, node.PVENode
	if v.r.o.GuestFor != nil {
		closeGuest(v.guest)
		v.guest = v.r.o.GuestFor(v.vm, node, nt, v.log)
		v.guestUp, v.waited, v.probesFresh = false, false, false
	}
	return nil
}

// step runs one resolved step and reports it.
func (v *vmRun) step(ctx context.Context, i int) (Status, error) {
	st := v.steps[i]
	v.cur, v.usedGuest, v.waited = st.Name, false, false
	v.r.emit(Event{Type: EventTaskStart, VMID: v.vm.VMID, Task: st.Name, Kind: st.Kind})
	start := time.Now()
	change, status, err := v.do(ctx, i)
	if err != nil && ctx.Err() != nil {
		// Whatever failed, the cause is the interrupt: say that first.
		err = fmt.Errorf("%w: %w", errInterrupted, err)
	}
	v.out.flush()
	end := Event{
		Type: EventTaskEnd, VMID: v.vm.VMID, Task: st.Name, Kind: st.Kind, Status: status,
		Change: v.maskChange(change), Transport: v.transport(st), Duration: time.Since(start), DryRun: v.r.o.DryRun,
	}
	if !v.r.o.Diff {
		end.Change.Diff = ""
	}
	// Applied: say what was done, not what would be.
	if status == StatusChanged && !v.r.o.DryRun && end.Change.Done != "" {
		end.Change.Summary = end.Change.Done
	}
	if err != nil {
		end.Error = v.mask(err.Error())
	}
	v.r.emit(end)
	if err == nil && change.SkipRest != "" {
		v.skipRest(i, change.SkipRest)
	}
	return status, err
}

// skipRest skips the steps after i with reason (a template that is built).
func (v *vmRun) skipRest(i int, reason string) {
	for j := i + 1; j < len(v.steps); j++ {
		if !v.steps[j].Skipped {
			v.steps[j].Skipped, v.steps[j].SkipReason, v.steps[j].Task = true, reason, nil
		}
	}
}

// do is check → (dry run: stop) → apply → re-check.
func (v *vmRun) do(ctx context.Context, i int) (tasks.Change, Status, error) {
	st := v.steps[i]
	if st.Skipped {
		return tasks.Change{Summary: st.SkipReason}, StatusSkipped, nil
	}
	change, err := v.check(ctx, i)
	switch {
	case err != nil:
		return change, StatusFailed, err
	case !change.Pending():
		return change, StatusOK, nil
	case v.r.o.DryRun:
		return change, StatusChanged, nil
	}
	err = st.Task.Apply(ctx, v.env, change)
	v.env.Changed = true
	// Whatever Apply did, node and guest facts read before are stale now,
	// and so is where VMs live.
	v.env.Forget("pve:")
	v.env.Forget("guest")
	v.probesFresh = false
	if v.r.placer != nil {
		v.r.placer.Changed()
	}
	if err != nil {
		return change, StatusFailed, err
	}
	if change.MovesTo != "" {
		n := v.r.o.Inventory.Nodes[change.MovesTo]
		if n == nil {
			return change, StatusFailed, fmt.Errorf("moved to node %s, which %s does not list", change.MovesTo, v.r.o.Inventory.File)
		}
		if err := v.useNode(ctx, n); err != nil {
			return change, StatusFailed, fmt.Errorf("moved to node %s: %w", n.Name, err)
		}
	}
	if change.Action == tasks.Run {
		return change, StatusChanged, nil // a script ran; there is no state to compare
	}
	after, err := v.check(ctx, i)
	if err != nil {
		return change, StatusFailed, fmt.Errorf("check after apply: %w", err)
	}
	if after.Pending() {
		return change, StatusFailed, fmt.Errorf("did not converge: %s", after.Summary)
	}
	return change, StatusChanged, nil
}

// check runs the step's Check with writes refused, after fetching the guest
// probes in one batch when the step is a prober.
func (v *vmRun) check(ctx context.Context, i int) (tasks.Change, error) {
	v.checking = true
	v.env.Node = readOnlyNode{v.node}
	cluster := v.env.Cluster
	if cluster != nil {
		v.env.Cluster = readOnlyCluster{cluster}
	}
	defer func() {
		v.checking = false
		v.env.Node, v.env.Cluster = v.node, cluster
	}()
	if _, ok := v.steps[i].Task.(tasks.GuestProber); ok {
		v.prefetch(ctx, i)
		// Its probes come from the batch: the step reads the guest even if
		// it never asks for it.
		v.usedGuest = v.usedGuest || v.probesFresh
	}
	return v.steps[i].Task.Check(ctx, v.env)
}

// prefetch runs the probes of every remaining prober step in one round
// trip and stores the results where env.GuestProbe finds them. A failed
// batch is not an error: each task then probes on its own and reports.
func (v *vmRun) prefetch(ctx context.Context, from int) {
	if v.probesFresh || !v.guestUp {
		return
	}
	var lines []string
	seen := map[string]bool{}
	for _, st := range v.steps[from:] {
		p, ok := st.Task.(tasks.GuestProber)
		if st.Skipped || !ok {
			continue
		}
		for _, l := range p.GuestProbes(v.env) {
			if !seen[l] {
				seen[l] = true
				lines = append(lines, l)
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	g, err := v.env.Guest(ctx)
	if err != nil {
		v.log("guest probes: %v", err)
		return
	}
	bctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	results, err := transport.BatchParallel(bctx, g, lines)
	if err != nil {
		v.log("guest probes in one batch: %v; probing one by one", err)
		return
	}
	for j, l := range lines {
		v.env.Store("guest-probe:"+l, results[j])
	}
	v.probesFresh = true
}

// guestFn is env.Guest: it waits for the guest once per step (bounded by
// the VM's agent timeout; the chooser answers at once when its channel is
// up, and may switch channels between steps), then hands out the chooser,
// read-only during Check.
func (v *vmRun) guestFn(ctx context.Context) (tasks.Guest, error) {
	if v.guest == nil {
		return nil, errors.New("no way into the guest is configured")
	}
	v.usedGuest = true
	if v.nodeLost != nil {
		if err := v.nodeLost(); err != nil {
			return nil, err
		}
	}
	if !v.waited {
		// The chooser has its own timeout and a better message; this bound
		// only catches a chooser that never returns.
		wctx, cancel := context.WithTimeout(ctx, v.vm.AgentTimeout()+10*time.Second)
		defer cancel()
		if err := v.guest.Wait(wctx); err != nil {
			return nil, err
		}
		v.waited, v.guestUp = true, true
	}
	if v.checking {
		return readOnlyGuest{v.guest}, nil
	}
	return v.guest, nil
}

// transport names the channel the step used: the guest's when it asked
// for the guest or read the probe batch, else the node.
func (v *vmRun) transport(st playbooks.ResolvedStep) string {
	switch {
	case st.Skipped:
		return ""
	case !v.usedGuest || v.guest == nil:
		return "node"
	}
	if c, ok := v.guest.(interface{ Channel() string }); ok {
		if ch := c.Channel(); ch != "" {
			return ch
		}
		return "none" // no channel answered
	}
	name, _, _ := strings.Cut(v.guest.Name(), " ") // "ssh phoenix@10.0.0.5" → "ssh"
	return name
}

func (v *vmRun) log(format string, args ...any) {
	v.r.emit(Event{Type: EventLog, VMID: v.vm.VMID, Task: v.cur, Text: v.mask(fmt.Sprintf(format, args...))})
}

// mask hides the VM's password in text phoenix built itself (errors can
// quote remote stderr or command lines).
func (v *vmRun) mask(s string) string { return transport.Redact(s, v.secrets) }

func (v *vmRun) maskChange(c tasks.Change) tasks.Change {
	c.Summary, c.Done, c.Diff, c.Details = v.mask(c.Summary), v.mask(c.Done), v.mask(c.Diff), v.mask(c.Details)
	if len(c.Commands) > 0 {
		cmds := make([]string, len(c.Commands))
		for i, l := range c.Commands {
			cmds[i] = v.mask(l)
		}
		c.Commands = cmds
	}
	c.Plan = nil
	return c
}

// readOnlyNode and readOnlyGuest are what a task's Check gets: they refuse
// Put and every command not marked as a probe, so no check writes, in a
// dry run or before an apply, whatever the task does.
type readOnlyNode struct{ transport.Transport }

func (n readOnlyNode) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if err := probeOnly(cmd); err != nil {
		return transport.Result{}, err
	}
	return n.Transport.Run(ctx, cmd)
}

func (readOnlyNode) Put(_ context.Context, path string, _ io.Reader, _ transport.Attrs) error {
	return fmt.Errorf("put %s: %w", path, ErrReadOnly)
}

// readOnlyCluster hands out the other nodes of the cluster read-only too
// (a clone source's node).
type readOnlyCluster struct{ tasks.Cluster }

func (c readOnlyCluster) Node(ctx context.Context, name string) (transport.Transport, error) {
	t, err := c.Cluster.Node(ctx, name)
	if err != nil {
		return nil, err
	}
	return readOnlyNode{t}, nil
}

type readOnlyGuest struct{ tasks.Guest }

func (g readOnlyGuest) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if err := probeOnly(cmd); err != nil {
		return transport.Result{}, err
	}
	return g.Guest.Run(ctx, cmd)
}

func (readOnlyGuest) Put(_ context.Context, path string, _ io.Reader, _ transport.Attrs) error {
	return fmt.Errorf("put %s: %w", path, ErrReadOnly)
}

// probeOnly refuses a command a check may not run.
func probeOnly(cmd transport.Cmd) error {
	if cmd.Probe {
		return nil
	}
	return fmt.Errorf("run %q: %w: a check runs only commands marked as probes (transport.Cmd.Probe)", cmd.Printable(), ErrReadOnly)
}

// lineWriter turns live output into one event per line.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line string)
}

// maxLine bounds a line that never ends (a progress bar without newlines).
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(strings.TrimSuffix(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.emit(string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}
