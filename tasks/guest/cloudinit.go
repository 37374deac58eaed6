package guest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// The probe reads the long status; polling uses it too, since it carries the
// short status line and costs the same round trip.
var (
	cloudInitStatus  = transport.Command("cloud-init", "status", "--long")
	cloudInitLogTail = transport.Command("tail", "-n", "25", "/var/log/cloud-init-output.log")
)

// cloudInit is cloud_init: it waits for cloud-init to finish in the guest and
// reports its status. It changes nothing.
type cloudInit struct {
	d       deps
	Timeout int `json:"timeout_seconds"`
}

func newCloudInit(d deps, params map[string]any) (tasks.Task, error) {
	t := &cloudInit{d: d}
	if err := tasks.Decode(params, t); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *cloudInit) timeout() time.Duration { return seconds(t.Timeout, 600*time.Second) }

func (t *cloudInit) GuestProbes(*tasks.Env) []string { return []string{cloudInitStatus} }

func (t *cloudInit) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		return notYet(fmt.Sprintf("will wait up to %s for cloud-init to finish", t.timeout()), "cloud-init finished"), nil
	}
	return t.wait(ctx, env)
}

func (t *cloudInit) wait(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	timeout := t.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res, err := env.GuestProbe(ctx, cloudInitStatus)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("cloud-init status: %w", err)
	}
	var last string
	for {
		st := parseCloudInitStatus(res.Stdout)
		switch {
		case st.status == "" && res.ExitCode != 0:
			return tasks.Change{}, fmt.Errorf("cloud-init status: %w", res.Err(cloudInitStatus))
		case st.status == "":
			return tasks.Change{}, fmt.Errorf("cloud-init status: no status line in %q", transport.Tail(res.Stdout, 3))
		case st.error():
			return tasks.Change{}, errors.New("cloud-init failed (what failed is below; once fixed, `cloud-init clean --logs --reboot` in the guest runs it again, or recreate the VM):\n" +
				strings.TrimSpace(string(res.Stdout)) + t.logTail(ctx, env))
		case !st.running():
			if last != "" {
				// cloud-init changed the guest while this step waited (users,
				// host keys, mounts): probes batched before it are stale.
				env.Forget("guest-probe:")
			}
			c := st.change(res.Stdout)
			if st.degraded() {
				c.Details += t.logTail(ctx, env)
			}
			return c, nil
		}
		if st.status != last {
			env.Logf("waiting for cloud-init (%s)", st.status)
			last = st.status
		}
		if res, err = t.poll(ctx, env, timeout); err != nil {
			return tasks.Change{}, err
		}
	}
}

// poll waits one interval and reads the status again. A failed read (cloud-init
// restarts networking, the channel drops) is retried until the timeout.
func (t *cloudInit) poll(ctx context.Context, env *tasks.Env, timeout time.Duration) (transport.Result, error) {
	var lastErr error
	for {
		if err := tasks.Sleep(ctx, t.d.poll); err != nil {
			switch {
			case errors.Is(err, context.Canceled): // the run was interrupted: no timeout to report
				return transport.Result{}, fmt.Errorf("wait for cloud-init: %w", err)
			case lastErr != nil:
				return transport.Result{}, fmt.Errorf("cloud-init status: no answer within %s: %w", timeout, lastErr)
			}
			return transport.Result{}, fmt.Errorf("cloud-init still running after %s", timeout)
		}
		res, err := t.read(ctx, env)
		if err == nil {
			return res, nil
		}
		lastErr = err
		env.Logf("cloud-init status: %v (retrying)", err)
	}
}

// read runs the status command; its exit code is no error.
func (t *cloudInit) read(ctx context.Context, env *tasks.Env) (transport.Result, error) {
	g, err := env.Guest(ctx)
	if err != nil {
		return transport.Result{}, err
	}
	res, err := run(ctx, g, cloudInitStatus)
	if transport.ExitCode(err) > 0 {
		return res, nil // status exits non-zero on error and degraded: the output says which
	}
	return res, err
}

// logTail is the tail of the output log, shown for status error and
// degraded: the status detail rarely says which command failed.
func (t *cloudInit) logTail(ctx context.Context, env *tasks.Env) string {
	g, err := env.Guest(ctx)
	if err == nil {
		var res transport.Result
		if res, err = run(ctx, g, cloudInitLogTail); err == nil {
			return "\n/var/log/cloud-init-output.log (last 25 lines):\n" + strings.TrimRight(string(res.Stdout), "\n")
		}
	}
	return fmt.Sprintf("\n(output log unreadable: %v)", err)
}

// Apply runs only for a guest that could not answer at Check time: it waits now.
func (t *cloudInit) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	_, err := replan(ctx, env, c, t.wait)
	return err
}

// ciStatus is the parsed output of `cloud-init status --long`. Versions
// before 23.4 print status, time and detail; later ones add extended_status
// ("degraded done"), errors and recoverable_errors.
type ciStatus struct {
	status   string // not started|not run|running|done|error|disabled
	extended string
}

func parseCloudInitStatus(out []byte) ciStatus {
	var st ciStatus
	for _, l := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "status":
			if st.status == "" {
				st.status = v
			}
		case "extended_status":
			st.extended = v
		}
	}
	return st
}

func (s ciStatus) running() bool {
	switch s.status {
	case "running", "not started", "not run", "not running":
		return true
	}
	return false
}

func (s ciStatus) error() bool { return s.status == "error" }

func (s ciStatus) degraded() bool {
	return s.status == "degraded" || strings.HasPrefix(s.extended, "degraded")
}

// change reports a finished cloud-init; degraded is a warning, not a failure.
func (s ciStatus) change(long []byte) tasks.Change {
	c := tasks.Change{Action: tasks.None, Details: strings.TrimSpace(string(long))}
	switch {
	case s.degraded():
		c.Summary = fmt.Sprintf("cloud-init %s with warnings (%s), see details", s.status, cmp.Or(s.extended, s.status))
	case s.status == "disabled":
		c.Summary = "cloud-init is disabled in the guest"
	default:
		c.Summary = "cloud-init " + s.status
	}
	return c
}
