// Package guest holds the in-guest tasks: wait for the guest, cloud-init
// status, NFS shares in /etc/fstab, files from the node, feature scripts, and
// the guest's SSH host key (written on the node before first boot).
//
// Guest tasks read guest facts with read-only probe lines (tasks.GuestProber)
// that the runner fetches for all of them in one round trip, so a converged VM
// costs no guest command beyond that batch. A VM that does not exist or is not
// running cannot answer: Check then returns Unknown with what it will do, and
// Apply checks for real once the guest answers.
package guest

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/tasks/pve"
	"github.com/phoenix-hv/phoenix/transport"
	sshtransport "github.com/phoenix-hv/phoenix/transport/ssh"
)

// Register adds the guest task kinds to reg. feature finds the script
// NAME.sh of a feature (the first of dirs that has it, else a built-in one).
func Register(reg tasks.Registry, feature func(name string, dirs []string) ([]byte, error)) {
	deps{
		state:   pve.ReadState,
		feature: feature,
		pin:     sshtransport.PinHostKey,
		forget:  sshtransport.ForgetHostKey,
		now:     time.Now,
		poll:    2 * time.Second,
	}.register(reg)
}

// deps are what the tasks take from other packages and the clock; tests
// supply their own.
type deps struct {
	state   func(ctx context.Context, env *tasks.Env) (*pve.State, error)
	feature func(name string, dirs []string) ([]byte, error)
	pin     func(file, alias string, key ssh.PublicKey) error
	forget  func(file, alias string) error
	now     func() time.Time
	poll    time.Duration // between polls of long guest work
}

func (d deps) register(reg tasks.Registry) {
	reg["guest_hostkey"] = func(p map[string]any) (tasks.Task, error) { return newHostKey(d, p) }
	reg["guest_wait"] = func(p map[string]any) (tasks.Task, error) { return newWait(d, p) }
	reg["cloud_init"] = func(p map[string]any) (tasks.Task, error) { return newCloudInit(d, p) }
	reg["nfs_mount"] = func(p map[string]any) (tasks.Task, error) { return newNFSMount(d, p) }
	reg["file_inject"] = func(p map[string]any) (tasks.Task, error) { return newFileInject(d, p) }
	reg["feature"] = func(p map[string]any) (tasks.Task, error) { return newFeature(d, p) }
	reg["guest_template_prep"] = func(p map[string]any) (tasks.Task, error) { return newTemplatePrep(d, p) }
}

// guestUp reports whether the VM is running, so its guest can answer.
func (d deps) guestUp(ctx context.Context, env *tasks.Env) (bool, error) {
	st, err := d.state(ctx, env)
	if err != nil {
		return false, fmt.Errorf("read vm state: %w", err)
	}
	return st.Exists && st.Status == "running", nil
}

// notYet is the Check result for a guest that cannot answer yet: what
// the task will do once it does, and the same done.
func notYet(will, did string) tasks.Change {
	return tasks.Change{Action: tasks.Unknown, Summary: will, Done: did}
}

// checker is a task's Check without the running-VM gate.
type checker func(ctx context.Context, env *tasks.Env) (tasks.Change, error)

// replan returns c when Check could plan it, else the real plan, read now
// that Apply runs and the guest answers (waiting for it if needed).
func replan(ctx context.Context, env *tasks.Env, c tasks.Change, check checker) (tasks.Change, error) {
	if c.Action != tasks.Unknown {
		return c, nil
	}
	return check(ctx, env)
}

// planned is Apply's start for a task that changes the guest: the plan of c
// (read now if Check could not) and the guest to apply it through. A nil
// plan means a fresh check found nothing left to do.
func planned[P any](ctx context.Context, env *tasks.Env, c tasks.Change, check checker) (*P, tasks.Guest, error) {
	c, err := replan(ctx, env, c, check)
	if err != nil || !c.Pending() {
		return nil, nil, err
	}
	p, ok := c.Plan.(*P)
	if !ok {
		return nil, nil, fmt.Errorf("change carries no %T plan", p)
	}
	g, err := env.Guest(ctx)
	if err != nil {
		return nil, nil, err
	}
	return p, g, nil
}

// cmdTimeout bounds a plain command (mkdir, chmod, a hash, a node read):
// long enough to hash a large file, short enough that a hung mount ends
// the step rather than the run.
const cmdTimeout = 10 * time.Minute

// run runs a plain command line, bounded by cmdTimeout.
func run(ctx context.Context, r transport.Runner, line string) (transport.Result, error) {
	return r.Run(ctx, transport.Cmd{Line: line, Timeout: cmdTimeout})
}

// probe runs a command line that only reads, bounded by cmdTimeout: the
// kind a Check may run.
func probe(ctx context.Context, r transport.Runner, line string) (transport.Result, error) {
	return r.Run(ctx, transport.Cmd{Line: line, Timeout: cmdTimeout, Probe: true})
}

// seconds turns a timeout parameter into a duration, def when unset.
func seconds(n int, def time.Duration) time.Duration {
	if n <= 0 {
		return def
	}
	return time.Duration(n) * time.Second
}

// out is where live output of long steps goes.
func out(env *tasks.Env) io.Writer {
	if env.Out == nil {
		return io.Discard
	}
	return env.Out
}

// lastLines returns the last n lines of b, for error messages.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
