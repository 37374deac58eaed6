// Package runner is the plan/apply engine: it renders a playbook for each
// selected VM, runs the VMs in dependency order with bounded parallelism,
// checks every step before applying it, re-checks after, and reports all of
// it as events to an Observer.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/placement"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// Guest is the way into one guest that the runner hands to tasks: it picks
// its channel itself (agent first, SSH fallback). Wait blocks until a
// channel answers or the guest's own timeout ends. If it implements
// io.Closer the runner closes it when the VM is done; if it has
// Channel() string ("agent"/"ssh"), events use it.
type Guest interface {
	tasks.Guest
	Wait(ctx context.Context) error
}

// Options configures one run.
type Options struct {
	Config    *inventory.Config
	Inventory *inventory.Inventory
	Playbook  *playbooks.Playbook
	// VMIDs are the VMs to run; All runs every VM of Config. Dependencies
	// that are not selected are not run: they must exist already, unless
	// WithDeps adds them to the run.
	VMIDs    []int
	All      bool
	WithDeps bool
	Forks    int // VMs in parallel; default 5
	// DryRun checks every step and applies nothing.
	DryRun bool
	// Diff puts each change's diff into its task_end event.
	Diff     bool
	Observer Observer
	Registry tasks.Registry
	// Connect opens the node transport; called once per node and run, the
	// connection is shared by all VMs of that node and closed at the end.
	Connect func(ctx context.Context, node *inventory.Node) (transport.Transport, error)
	// GuestFor returns the way into vm's guest, given the node it lives on
	// and its transport; log reports channel changes ("agent stopped
	// answering; continuing over SSH") as events of the step running. Nil
	// means guest steps fail with a clear error.
	GuestFor func(vm *inventory.VM, node *inventory.Node, t transport.Transport, log func(format string, args ...any)) Guest
	// ReadCluster reads a node's cluster view (pve.ReadCluster): where each
	// VMID lives, so each VM's commands run on the node that has it. Nil:
	// every VM is on its home node, as the config and inventory say.
	ReadCluster placement.ReadCluster
	// Migrate lets a VM that lives on another node than its home be moved
	// there (tasks.Env.Migrate).
	Migrate bool
	// FeatureDirs are searched for feature scripts before the built-in ones.
	FeatureDirs []string
	// GuestKnownHosts is where guest host keys are pinned; default
	// Inventory.GuestKnownHosts.
	GuestKnownHosts string
	// NoRunLock skips the lock a run that changes VMs holds on their node
	// (runlock.go); for tests whose node is a strict fake.
	NoRunLock bool
	// RebuildTemplates lets templates whose image changed be rebuilt
	// (tasks.Env.RebuildTemplates).
	RebuildTemplates bool
}

// Counts tallies step outcomes.
type Counts struct {
	OK, Changed, Failed, Skipped int
}

func (c *Counts) add(o Counts) {
	c.OK += o.OK
	c.Changed += o.Changed
	c.Failed += o.Failed
	c.Skipped += o.Skipped
}

func (c *Counts) count(s Status) {
	switch s {
	case StatusOK:
		c.OK++
	case StatusChanged:
		c.Changed++
	case StatusSkipped:
		c.Skipped++
	case StatusFailed:
		c.Failed++
	}
}

// VMResult is how one VM went.
type VMResult struct {
	VMID int
	Counts
	Duration time.Duration
	// Err is the first failure, wrapped with the VM and step
	// (`vm 8101: step "mount nfs /mnt/data": …`); nil on success.
	Err error
}

// Summary is the outcome of a run.
type Summary struct {
	VMs      []VMResult // in run order
	Totals   Counts
	Duration time.Duration
	DryRun   bool
	// Interrupted: the run's context was cancelled (Ctrl-C) before it ended.
	Interrupted bool
	// FailedNodes are the nodes the run could not reach or lost, in name
	// order; their VMs failed (each says why), the others went on.
	FailedNodes []string
}

// errInterrupted wraps the error of a step, or of a VM that never started,
// that the run's cancellation stopped.
var errInterrupted = errors.New("interrupted")

// Failed reports whether any VM failed.
func (s Summary) Failed() bool {
	return slices.ContainsFunc(s.VMs, func(r VMResult) bool { return r.Err != nil })
}

// ExitCode maps the outcome to the CLI's exit code: 130 (128 + SIGINT, as
// shells report it) when interrupted, 1 when anything failed, 2 for a dry
// run with pending changes when detailed is set, else 0.
func (s Summary) ExitCode(detailed bool) int {
	switch {
	case s.Interrupted:
		return 130
	case s.Failed():
		return 1
	case detailed && s.DryRun && s.Totals.Changed > 0:
		return 2
	}
	return 0
}

// Run renders the playbook for the selected VMs, then runs them. Errors
// before anything runs (unknown vmid, a playbook that does not render) are
// returned with an empty Summary; VM failures are in the Summary and joined
// in the error.
func Run(ctx context.Context, o Options) (Summary, error) {
	if err := o.prepare(); err != nil {
		return Summary{}, err
	}
	vms, err := SelectVMs(o.Config, o.VMIDs, o.All, o.WithDeps)
	if err != nil {
		return Summary{}, err
	}
	if o.Playbook.Teardown {
		slices.Reverse(vms)
	}
	plans := make([][]playbooks.ResolvedStep, len(vms))
	homes := make(map[int]*inventory.Node, len(vms))
	for i, vm := range vms {
		if plans[i], err = playbooks.Render(o.Playbook, vm, o.Registry); err != nil {
			return Summary{}, fmt.Errorf("vm %d: %w", vm.VMID, err)
		}
		if homes[vm.VMID], err = o.Inventory.Home(o.Config, vm); err != nil {
			return Summary{}, err
		}
	}
	obs := o.Observer
	if obs == nil {
		obs = ObserverFunc(func(Event) {})
	}
	ids := make([]int, len(vms))
	for i, vm := range vms {
		ids[i] = vm.VMID
	}
	r := &run{o: o, ids: ids, obs: &serial{o: obs}, homes: homes,
		nodes: &nodes{connect: o.Connect, lockDir: runLockDir}, owner: lockOwner(time.Now())}
	if o.ReadCluster != nil {
		r.placer = placement.New(o.Inventory, o.ReadCluster, r.nodes.get)
	}
	start := time.Now()
	r.emit(Event{Type: EventRunStart, Playbook: o.Playbook.Name, VMIDs: ids, Forks: o.Forks, DryRun: o.DryRun})
	results := r.schedule(ctx, vms, plans)
	r.nodes.close()

	sum := Summary{VMs: results, Duration: time.Since(start), DryRun: o.DryRun, Interrupted: ctx.Err() != nil, FailedNodes: r.nodes.failures()}
	var errs []error
	var failed []int
	for _, res := range results {
		sum.Totals.add(res.Counts)
		if res.Err != nil {
			errs = append(errs, res.Err)
			failed = append(failed, res.VMID)
		}
	}
	r.emit(Event{Type: EventSummary, Counts: sum.Totals, Duration: sum.Duration, FailedVMs: failed, FailedNodes: sum.FailedNodes,
		DryRun: o.DryRun, Interrupted: sum.Interrupted})
	return sum, errors.Join(errs...)
}

// prepare checks the options and fills defaults.
func (o *Options) prepare() error {
	switch {
	case o.Config == nil:
		return errors.New("runner: no config")
	case o.Inventory == nil:
		return errors.New("runner: no inventory")
	case o.Playbook == nil:
		return errors.New("runner: no playbook")
	case o.Registry == nil:
		return errors.New("runner: no task registry")
	case o.Connect == nil:
		return errors.New("runner: no node connector")
	case !o.All && len(o.VMIDs) == 0:
		return errors.New("no VM selected: give vmids or --all")
	}
	if o.Forks <= 0 {
		o.Forks = 5
	}
	if o.GuestKnownHosts == "" {
		o.GuestKnownHosts = o.Inventory.GuestKnownHosts
	}
	return nil
}

// SelectVMs returns the VMs a run of vmids (or all) works on, in
// dependency order. Unless deps is set it does not add unselected
// dependencies as Config.Order does: `delete 8101` must never destroy its
// template.
func SelectVMs(cfg *inventory.Config, vmids []int, all, deps bool) ([]*inventory.VM, error) {
	ordered, err := cfg.Order(vmids, all)
	if err != nil {
		return nil, err
	}
	if all || deps {
		return ordered, nil
	}
	return slices.DeleteFunc(ordered, func(vm *inventory.VM) bool { return !slices.Contains(vmids, vm.VMID) }), nil
}

// run is the state of one Run shared by its VMs.
type run struct {
	o     Options
	ids   []int // the VMs of the run, in order
	obs   *serial
	nodes *nodes
	owner string // names this run to another one its run lock refuses
	// homes are the nodes the config places the VMs on, by vmid.
	homes map[int]*inventory.Node
	// placer finds where VMs live; nil without Options.ReadCluster.
	placer *placement.Placer
}

func (r *run) emit(e Event) { r.obs.OnEvent(e) }

// schedule runs each VM once all its dependencies in this run have
// succeeded, at most Forks at a time, in order among the ready ones. A VM
// whose dependency failed is failed without running. A teardown playbook
// turns the edges round: a VM runs once everything depending on it has.
func (r *run) schedule(ctx context.Context, vms []*inventory.VM, plans [][]playbooks.ResolvedStep) []VMResult {
	n := len(vms)
	index := make(map[int]int, n)
	for i, vm := range vms {
		index[vm.VMID] = i
	}
	waiting := make([]int, n)
	dependents := make([][]int, n)
	for i, vm := range vms {
		for _, d := range vm.DependsOn() {
			if j, ok := index[d]; ok {
				before, after := j, i // the dependency first
				if r.o.Playbook.Teardown {
					before, after = i, j
				}
				waiting[after]++
				dependents[before] = append(dependents[before], after)
			}
		}
	}
	results := make([]VMResult, n)
	settled := make([]bool, n) // finished, or failed because of a dependency
	var ready []int
	for i := range vms {
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	done := make(chan int, n)
	var g errgroup.Group
	g.SetLimit(r.o.Forks)
	running, finished := 0, 0

	// failDependents settles everything downstream of a failed VM i.
	var failDependents func(i int)
	failDependents = func(i int) {
		for _, d := range dependents[i] {
			if settled[d] {
				continue
			}
			settled[d] = true
			finished++
			err := fmt.Errorf("vm %d: %s %d failed", vms[d].VMID, r.blocker(), vms[i].VMID)
			results[d] = VMResult{VMID: vms[d].VMID, Counts: Counts{Failed: 1}, Err: err}
			r.emit(Event{Type: EventVMEnd, VMID: vms[d].VMID, Status: StatusFailed, Counts: results[d].Counts,
				Error: fmt.Sprintf("%s %d failed", r.blocker(), vms[i].VMID)})
			failDependents(d)
		}
	}

	for finished < n {
		for running < r.o.Forks && len(ready) > 0 {
			i := ready[0]
			ready = ready[1:]
			running++
			g.Go(func() error {
				results[i] = r.runVM(ctx, vms[i], plans[i])
				done <- i
				return nil
			})
		}
		if running == 0 {
			// Nothing can start: only a dependency cycle, which Order refuses.
			for i, ok := range settled {
				if !ok {
					results[i] = VMResult{VMID: vms[i].VMID, Counts: Counts{Failed: 1}, Err: fmt.Errorf("vm %d: dependency cycle", vms[i].VMID)}
				}
			}
			break
		}
		i := <-done
		running--
		finished++
		settled[i] = true
		if results[i].Err != nil {
			failDependents(i)
			continue
		}
		for _, d := range dependents[i] {
			if waiting[d]--; waiting[d] == 0 && !settled[d] {
				ready = append(ready, d)
			}
		}
	}
	_ = g.Wait() // every goroutine returns nil; failures are in results
	return results
}

// blocker names what a VM waits for: its dependency, or in a teardown the
// VM depending on it.
func (r *run) blocker() string {
	if r.o.Playbook.Teardown {
		return "dependent vm"
	}
	return "dependency"
}

// nodes opens one connection per node, on first use, for the whole run,
// with the holder of the run's VM locks on it. It remembers the nodes it
// could not reach and those whose connection broke, for the summary.
type nodes struct {
	connect func(ctx context.Context, node *inventory.Node) (transport.Transport, error)
	lockDir string
	conns   transport.Pool
	mu      sync.Mutex
	locks   map[string]*runLocks // per opened node
	lost    map[string]error     // what broke a node's connection
}

// lockHolder is the run-lock holder of a node get opened.
func (n *nodes) lockHolder(node *inventory.Node) *runLocks {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.locks[node.Name]
}

// get returns the node's connection, watched: a command on it that finds
// the connection lost marks the node failed.
func (n *nodes) get(ctx context.Context, node *inventory.Node) (transport.Transport, error) {
	t, err := n.conns.Get(node.Name, func() (transport.Transport, error) {
		t, err := n.connect(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node.Name, err)
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.locks == nil {
			n.locks = map[string]*runLocks{}
		}
		n.locks[node.Name] = newRunLocks(t, node.Name, n.lockDir)
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	return watched{Transport: t, lost: func(err error) { n.lose(node.Name, err) }}, nil
}

// lose remembers the first error that broke the node's connection.
func (n *nodes) lose(name string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lost == nil {
		n.lost = map[string]error{}
	}
	if n.lost[name] == nil {
		n.lost[name] = err
	}
}

// lostErr is what broke the node's connection, nil while it holds: the
// connection is not dialled again within a run.
func (n *nodes) lostErr(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lost[name]
}

// failures lists the nodes that could not be reached or were lost.
func (n *nodes) failures() []string {
	out := n.conns.Failed()
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range n.lost {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// close ends the run locks, then the connections they live on.
func (n *nodes) close() {
	n.mu.Lock()
	for _, l := range n.locks {
		l.close()
	}
	n.mu.Unlock()
	n.conns.Close()
}

// watched reports a lost connection of a node transport. Unwrap gives
// the connection itself (a guest's SSH jumps through it).
type watched struct {
	transport.Transport
	lost func(error)
}

func (w watched) Unwrap() transport.Transport { return w.Transport }

func (w watched) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	res, err := w.Transport.Run(ctx, cmd)
	w.check(err)
	return res, err
}

func (w watched) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	err := w.Transport.Put(ctx, path, r, a)
	w.check(err)
	return err
}

func (w watched) Get(ctx context.Context, path string, wr io.Writer) error {
	err := w.Transport.Get(ctx, path, wr)
	w.check(err)
	return err
}

func (w watched) check(err error) {
	if errors.Is(err, transport.ErrDisconnected) {
		w.lost(err)
	}
}

// closeGuest closes g when it holds connections.
func closeGuest(g Guest) {
	if c, ok := g.(io.Closer); ok {
		c.Close()
	}
}
