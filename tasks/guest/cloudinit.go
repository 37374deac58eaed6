package guest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// The long status is what a run that changed the VM reads, and what
// polling reads: it carries the short status line and costs the same round
// trip. It is a Python start-up in the guest (a quarter to half a second),
// so a run that changed nothing first reads the files it is made from.
var (
	cloudInitStatus  = transport.Command("cloud-init", "status", "--long")
	cloudInitLogTail = transport.Command("tail", "-n", "25", "/var/log/cloud-init-output.log")
	// cloudInitFiles prints result.json then status.json, the files
	// `cloud-init status` reads (cloudinit/cmd/status.py; both are links
	// into /var/lib/cloud/data made this boot: /run is a tmpfs, and the
	// init-local stage deletes them first). It fails, printing nothing
	// useful, while cloud-init has not finished or is disabled (then
	// `cloud-init status` says "disabled" whatever the files say).
	cloudInitFiles = "test ! -e /etc/cloud/cloud-init.disabled && test ! -e /run/cloud-init/disabled && " +
		"cat /run/cloud-init/result.json /run/cloud-init/status.json"
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

// GuestProbes is the files in a run that changed nothing so far, else the
// long status: a VM this run created or started is read in full (and its
// /run may hold the files of an earlier boot until cloud-init starts).
func (t *cloudInit) GuestProbes(env *tasks.Env) []string {
	if env.Changed {
		return []string{cloudInitStatus}
	}
	return []string{cloudInitFiles}
}

func (t *cloudInit) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		return notYet(fmt.Sprintf("will wait up to %s for cloud-init to finish", t.timeout()), "cloud-init finished"), nil
	}
	if !env.Changed {
		if c, ok := t.fromFiles(ctx, env); ok {
			return c, nil
		}
		// The probes were batched while cloud-init may have run.
		return t.waitFor(ctx, env, true)
	}
	return t.wait(ctx, env)
}

// fromFiles reports cloud-init done when its files prove it: anything else
// (running, an error, a warning, no files, a read that failed) is left to
// `cloud-init status --long`, which says it in cloud-init's own words.
func (t *cloudInit) fromFiles(ctx context.Context, env *tasks.Env) (tasks.Change, bool) {
	res, err := env.GuestProbe(ctx, cloudInitFiles)
	if err != nil || res.ExitCode != 0 {
		return tasks.Change{}, false
	}
	ds, last, ok := doneFromFiles(res.Stdout)
	if !ok {
		return tasks.Change{}, false
	}
	return tasks.Change{Action: tasks.None, Summary: "cloud-init done",
		Details: "status: done\nlast_update: " + last.UTC().Format(ciTime) + "\ndetail:\n" + ds +
			"\n(read from /run/cloud-init/result.json and status.json)"}, true
}

// ciTime is how `cloud-init status --long` prints last_update.
const ciTime = "Mon, 02 Jan 2006 15:04:05 -0700"

// ciStage is one stage of status.json (init-local, init, modules-config,
// modules-final). recoverable_errors came with 23.4 ("degraded done").
type ciStage struct {
	Errors            []json.RawMessage          `json:"errors"`
	RecoverableErrors map[string]json.RawMessage `json:"recoverable_errors"`
	Start             *float64                   `json:"start"`
	Finished          *float64                   `json:"finished"`
}

// doneFromFiles decides from result.json and status.json (in that order in
// out) as `cloud-init status` does: done when the final stage wrote its
// result, no stage runs or is marked as running, and no stage had an error
// or a warning. It returns the datasource line cloud-init reports as detail
// and the time of the last stage event.
func doneFromFiles(out []byte) (datasource string, last time.Time, done bool) {
	dec := json.NewDecoder(bytes.NewReader(out))
	var result struct {
		V1 *struct {
			Datasource        *string                    `json:"datasource"`
			Errors            []json.RawMessage          `json:"errors"`
			RecoverableErrors map[string]json.RawMessage `json:"recoverable_errors"`
		} `json:"v1"`
	}
	var status struct {
		V1 map[string]json.RawMessage `json:"v1"`
	}
	if dec.Decode(&result) != nil || dec.Decode(&status) != nil || result.V1 == nil || status.V1 == nil {
		return "", time.Time{}, false
	}
	var extra json.RawMessage
	if !errors.Is(dec.Decode(&extra), io.EOF) {
		return "", time.Time{}, false // more than the two files: not what was asked for
	}
	if len(result.V1.Errors) > 0 || !noWarnings(result.V1.RecoverableErrors) {
		return "", time.Time{}, false
	}
	var latest float64
	for k, raw := range status.V1 {
		switch {
		case k == "stage":
			if string(raw) != "null" {
				return "", time.Time{}, false // a stage is running
			}
			continue
		case !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")):
			continue // datasource and other plain values
		}
		var st ciStage
		if json.Unmarshal(raw, &st) != nil {
			return "", time.Time{}, false
		}
		start, finished := deref(st.Start), deref(st.Finished)
		if start != 0 && finished == 0 || len(st.Errors) > 0 || !noWarnings(st.RecoverableErrors) {
			return "", time.Time{}, false
		}
		latest = max(latest, start, finished)
	}
	if latest == 0 {
		return "", time.Time{}, false // no stage ever ran
	}
	return cmp.Or(strings.TrimSpace(deref(result.V1.Datasource)), "(no datasource)"), time.Unix(int64(latest), 0), true
}

// noWarnings reports recoverable_errors without any entry ({} or
// {"WARNING": []}).
func noWarnings(m map[string]json.RawMessage) bool {
	for _, v := range m {
		var list []json.RawMessage
		if json.Unmarshal(v, &list) != nil || len(list) > 0 {
			return false
		}
	}
	return true
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (t *cloudInit) wait(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	return t.waitFor(ctx, env, false)
}

// waitFor waits until cloud-init finished. stale says that the probes
// batched before may predate its end even if its first status is "done".
func (t *cloudInit) waitFor(ctx context.Context, env *tasks.Env, stale bool) (tasks.Change, error) {
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
			if last != "" || stale {
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
		g, err := env.Guest(ctx)
		if err != nil {
			return transport.Result{}, err // no way into the guest is left: polling again cannot help
		}
		res, err := t.read(ctx, g)
		if err == nil {
			return res, nil
		}
		lastErr = err
		env.Logf("cloud-init status: %v (retrying)", err)
	}
}

// read runs the status command; its exit code is no error.
func (t *cloudInit) read(ctx context.Context, g tasks.Guest) (transport.Result, error) {
	res, err := probe(ctx, g, cloudInitStatus)
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
		if res, err = probe(ctx, g, cloudInitLogTail); err == nil {
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
