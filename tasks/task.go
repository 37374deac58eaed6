// Package tasks holds the units of work of a playbook. A task first reads
// facts and plans a change (Check, read-only), then applies it (Apply).
// "changed" is honest: a task whose Check finds nothing to do reports
// Action None and is never applied.
package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/transport"
)

// Action is what a Check decided.
type Action string

const (
	None    Action = "none"    // state matches; nothing to do
	Create  Action = "create"  // something will be created
	Update  Action = "update"  // something will be changed in place
	Delete  Action = "delete"  // something will be removed
	Run     Action = "run"     // a command/script will run (not a state diff)
	Unknown Action = "unknown" // cannot be known before an earlier change is applied
)

// Change is the plan of one task for one VM. It is a value: the runner
// prints it (text or JSON), and Apply receives it back.
type Change struct {
	Action Action `json:"action"`
	// Summary is one line a person reads. For a pending change it is the
	// plan, in the future tense ("will take snapshot final-form"); for
	// Action None it says why nothing is to do ("snapshot final-form
	// exists").
	Summary string `json:"summary"`
	// Done is a pending change in the past tense ("took snapshot
	// final-form"): what a run reports once Apply succeeded. Every task
	// words its change for both tenses here, once; the runner picks.
	Done string `json:"done,omitempty"`
	// Diff is a unified diff of what changes (qm config keys, file content);
	// secrets already masked.
	Diff string `json:"diff,omitempty"`
	// Commands previews the commands Apply will run, secrets masked.
	Commands []string `json:"commands,omitempty"`
	// Details is read-only output worth showing (cloud-init status --long).
	Details string `json:"details,omitempty"`
	// Plan is task-private data Apply needs; never printed.
	Plan any `json:"-"`
	// SkipRest, when set, ends the VM's playbook after this step: the
	// runner skips the steps after it with this reason. A template that is
	// built needs none of them (and could not run them: a template is never
	// started).
	SkipRest string `json:"-"`
	// MovesTo, when set, is the inventory node the VM lives on once Apply
	// succeeded (a migration): the runner points Env.Node (and the guest's
	// way in) there before the re-check and the steps after.
	MovesTo string `json:"-"`
}

// Pending reports whether applying the change would do anything.
func (c Change) Pending() bool { return c.Action != None }

// Task is one step of a playbook bound to its parameters.
type Task interface {
	// Check reads state through env and returns the change still needed.
	// It must not write: the runner refuses every Put and every command not
	// marked transport.Cmd.Probe while a task checks (ErrReadOnly).
	Check(ctx context.Context, env *Env) (Change, error)
	// Apply makes the change Check planned.
	Apply(ctx context.Context, env *Env, c Change) error
}

// GuestProber is implemented by guest tasks whose Check reads guest facts
// with plain commands. The runner runs the probes of all remaining guest
// tasks in one batched round trip before the first of them is checked.
type GuestProber interface {
	GuestProbes(env *Env) []string
}

// Guest is a way into the guest: the QEMU guest agent or SSH.
type Guest interface {
	transport.Runner
	transport.Files
	Name() string
}

// Env is what a task sees of the world for one VM. The runner builds one per
// VM and run; tasks never keep state between runs.
type Env struct {
	VM *inventory.VM
	// Config is the whole VM config (for clone sources, dependencies).
	Config *inventory.Config
	// Node is the Proxmox node of the VM, over SSH.
	Node transport.Transport
	// PVENode is the node's Proxmox name, for pvesh paths.
	PVENode string
	// NodeName is the inventory name of the node Node reaches: where the VM
	// lives, or its Home when the cluster has no such VMID.
	NodeName string
	// Home is the inventory node the config places the VM on.
	Home string
	// Cluster says where other VMIDs live and reaches the other nodes of
	// the VM's cluster; nil when no cluster view was read (everything is
	// then on Node).
	Cluster Cluster
	// Migrate allows moving a VM that lives on another node than its Home
	// (--migrate); without it that is drift, reported.
	Migrate bool
	// NFSServer is the address guests use for the NFS exports of the VM's
	// Home node.
	NFSServer string
	// Guest returns a working way into the guest, waiting up to the VM's agent
	// timeout; set by the runner.
	Guest func(ctx context.Context) (Guest, error)
	// Out receives live output of long steps (feature scripts, apt).
	Out io.Writer
	// Log reports progress lines ("waiting for guest agent…").
	Log func(format string, args ...any)
	// DryRun is true while planning only.
	DryRun bool
	// InRun lists the VMs of this run. A VM's dependencies among them ran
	// before it; in a dry run they are only planned, so a clone source the
	// run builds may not exist yet.
	InRun []int
	// RebuildTemplates allows rebuilding a template whose image changed
	// (--rebuild-template); without it the drift is only reported.
	RebuildTemplates bool
	// Changed is set by the runner once a step of this run changed the VM.
	// A run that changed nothing may read cheaper facts (cloud-init's
	// files instead of `cloud-init status --long`); one that created or
	// started the VM reads the full ones.
	Changed bool
	// FeatureDirs are searched for NAME.sh after the built-in features.
	FeatureDirs []string
	// GuestKnownHosts is the file where guest host keys are pinned, under the
	// alias transport/ssh.GuestHostKeyAlias(vmid).
	GuestKnownHosts string

	mu    sync.Mutex
	facts map[string]any
}

// Cached returns the value stored under key, reading it once with read.
// The runner calls Forget after every applied change so later checks see
// fresh state.
func (e *Env) Cached(key string, read func() (any, error)) (any, error) {
	e.mu.Lock()
	if v, ok := e.facts[key]; ok {
		e.mu.Unlock()
		return v, nil
	}
	e.mu.Unlock()
	v, err := read()
	if err != nil {
		return nil, err
	}
	e.Store(key, v)
	return v, nil
}

// Store caches v under key.
func (e *Env) Store(key string, v any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.facts == nil {
		e.facts = map[string]any{}
	}
	e.facts[key] = v
}

// Forget drops every cached fact whose key starts with prefix ("" = all).
func (e *Env) Forget(prefix string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.facts {
		if strings.HasPrefix(k, prefix) {
			delete(e.facts, k)
		}
	}
}

// Logf reports a progress line if a logger is set.
func (e *Env) Logf(format string, args ...any) {
	if e.Log != nil {
		e.Log(format, args...)
	}
}

// ProbeTimeout bounds one read of facts (a VM's state, the guest probes): a
// read that hangs (pmxcfs without quorum, a dead NFS server under a probed
// path) fails its step instead of stalling the run.
const ProbeTimeout = 2 * time.Minute

// GuestProbe runs a read-only command in the guest, answered from the batch
// the runner prefetched when possible.
func (e *Env) GuestProbe(ctx context.Context, line string) (transport.Result, error) {
	v, err := e.Cached("guest-probe:"+line, func() (any, error) {
		g, err := e.Guest(ctx)
		if err != nil {
			return nil, err
		}
		res, err := g.Run(ctx, transport.Cmd{Line: line, Timeout: ProbeTimeout, Probe: true})
		if err != nil && transport.ExitCode(err) < 0 {
			return nil, err
		}
		return res, nil
	})
	if err != nil {
		return transport.Result{}, err
	}
	return v.(transport.Result), nil
}

// Factory builds a task from its playbook parameters.
type Factory func(params map[string]any) (Task, error)

// Registry maps task kinds (as written in playbooks) to factories.
type Registry map[string]Factory

// Kinds lists the registered kinds, sorted.
func (r Registry) Kinds() []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Decode fills dst (a pointer to a params struct with json tags) from
// playbook parameters, refusing unknown parameters. Secrets arrive as their
// real value: this is the one place they are revealed, to the task.
func Decode(params map[string]any, dst any) error {
	b, err := json.Marshal(reveal(params))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	return nil
}

// ValidFeatureName reports whether name can name a feature: a plain file
// name (NAME.sh on this machine, NAME.* in the guest), never a path.
func ValidFeatureName(name string) bool {
	return featureName.MatchString(name) && !strings.Contains(name, "..")
}

var featureName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// reveal replaces every inventory.Secret in v by its real string.
func reveal(v any) any {
	switch x := v.(type) {
	case inventory.Secret:
		return x.Reveal()
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = reveal(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = reveal(e)
		}
		return out
	}
	return v
}

// Sleep waits d, or returns ctx's error as soon as ctx ends: every wait of a
// task stays bounded by its step.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
