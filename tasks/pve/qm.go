package pve

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// Bounds for qm commands: a full clone copies whole disks, the rest finish
// within qm's own timeouts.
const (
	qmTimeout    = 10 * time.Minute
	cloneTimeout = time.Hour
)

// call is one qm command Apply runs, kept as parts so a retry can send it
// (and its stdin) again.
type call struct {
	argv    []string
	stdin   string
	secrets []string
	timeout time.Duration
	// checkStderr: qm resize and qm template exit 0 even when the task
	// failed; unexpected stderr is the failure.
	checkStderr bool
	// done reports errors that mean the work is already done.
	done func(error) bool
	// fallback runs when the call fails with an error escalate accepts.
	fallback *call
	escalate func(error) bool
	// where is the inventory node that runs the call when it is not the
	// VM's (a clone source on another node of the cluster), reached through
	// env.Cluster when the call runs.
	where string
	// explain turns a failure into one that says what to do, or returns it.
	explain func(error) error
}

func (c call) line() string { return transport.Command(c.argv...) }

// printable is the line as shown to a person: secrets masked, and the node
// it runs on when that is not the VM's.
func (c call) printable() string {
	line := transport.Redact(c.line(), c.secrets)
	if c.where != "" {
		return "on " + c.where + ": " + line
	}
	return line
}

// on is the node the call runs on.
func (c call) on(ctx context.Context, env *tasks.Env) (transport.Runner, error) {
	if c.where == "" {
		return env.Node, nil
	}
	if env.Cluster == nil {
		return nil, fmt.Errorf("node %s: no cluster to reach it through", c.where)
	}
	return env.Cluster.Node(ctx, c.where)
}

// qm runs node writes. backoff holds the waits between tries while the VM's
// flock is busy; its length + 1 is the number of tries. rand salts password
// hashes (crypto/rand when nil).
type qm struct {
	backoff []time.Duration
	rand    io.Reader
}

func (q qm) random() io.Reader {
	if q.rand == nil {
		return rand.Reader
	}
	return q.rand
}

// defaultBackoff: 5 tries within about 15 s, on top of qm's own 10 s wait.
func defaultBackoff() []time.Duration {
	return []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
}

// Apply runs the calls a Check planned, in order. Every node task embeds
// qm, so this is their Apply.
func (q qm) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	calls, ok := c.Plan.([]call)
	if !ok {
		return errors.New("change carries no qm plan")
	}
	for _, cl := range calls {
		if err := q.run(ctx, env, cl); err != nil {
			return err
		}
	}
	return nil
}

// run sends one call, retrying while the flock is busy.
func (q qm) run(ctx context.Context, env *tasks.Env, c call) error {
	node, err := c.on(ctx, env)
	if err != nil {
		return err
	}
	for try := 0; ; try++ {
		err := q.once(ctx, node, c)
		switch {
		case err == nil, c.done != nil && c.done(err):
			return nil
		case IsLockTimeout(err) && try < len(q.backoff):
			env.Logf("%s: vm lock busy, retrying in %s", c.printable(), q.backoff[try])
			if werr := tasks.Sleep(ctx, q.backoff[try]); werr != nil {
				return fmt.Errorf("%w (retry cancelled: %v)", err, werr)
			}
		case c.fallback != nil && c.escalate(err):
			env.Logf("%s: %s; running %s", c.printable(), transport.Tail([]byte(stderrOf(err)), 1), c.fallback.printable())
			return q.run(ctx, env, *c.fallback)
		case IsLockTimeout(err):
			return fmt.Errorf("vm lock still busy after %d tries: %w", try+1, err)
		case IsLocked(err):
			return fmt.Errorf("vm is locked (%s): %s: %w", LockName(err), lockAdvice(env.VM.VMID, LockName(err)), err)
		case c.explain != nil:
			return c.explain(err)
		default:
			return err
		}
	}
}

func (q qm) once(ctx context.Context, node transport.Runner, c call) error {
	cmd := transport.Cmd{Line: c.line(), Secrets: c.secrets, Timeout: c.timeout}
	if c.stdin != "" {
		cmd.Stdin = strings.NewReader(c.stdin)
	}
	res, err := node.Run(ctx, cmd)
	var ee *transport.ExitError
	if err != nil && !errors.As(err, &ee) {
		return fmt.Errorf("run %q: %w", cmd.Printable(), err)
	}
	if err == nil && c.checkStderr && unexpectedStderr(res.Stderr) {
		err = &transport.ExitError{Line: cmd.Printable(), Stderr: res.Stderr, Stdout: res.Stdout}
	}
	if err != nil && c.where != "" {
		return fmt.Errorf("on node %s: %w", c.where, err)
	}
	return err
}

// lockAdvice says what a person can do about a VM's config lock (qm.md
// §3.2): phoenix never unlocks a VM itself, since only a person can know
// whether the operation that holds it is still running.
func lockAdvice(vmid int, lock string) string {
	switch lock {
	case "clone", "create":
		// qm writes the lock with the new config and removes it last.
		return fmt.Sprintf("a %s that did not finish (interrupted, or still running elsewhere); phoenix never unlocks a VM. "+
			"If no %[1]s is running, remove the half-made VM and run again: qm destroy %d --skiplock 1 --destroy-unreferenced-disks 1; "+
			"qm unlock %[2]d only if you know the %[1]s completed", lock, vmid)
	}
	return fmt.Sprintf("phoenix never unlocks a VM; wait for the %s to end, or run qm unlock %d if none is running", lock, vmid)
}

// Lines qm may leave on stderr of a successful command.
var reStderrNoise = regexp.MustCompile(`^(trying to acquire lock\.\.\.( OK)?|OK|Task finished with \d+ warning\(s\)!)$`)

func unexpectedStderr(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !reStderrNoise.MatchString(l) {
			return true
		}
	}
	return false
}

// commands previews what Apply runs, secrets masked; a fallback is listed
// after the call it may replace.
func commands(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.printable())
		if c.fallback != nil {
			out = append(out, commands([]call{*c.fallback})...)
		}
	}
	return out
}

// qmArgs starts a qm command line for vmid.
func qmArgs(sub string, vmid int, args ...string) []string {
	return append([]string{"qm", sub, fmt.Sprint(vmid)}, args...)
}
