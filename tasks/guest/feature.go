package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

const (
	featureDir = "/var/lib/phoenix/features"
	keepLog    = 64 << 10 // bytes of log kept for the error message
)

// feature is feature: a feature script run in the guest, detached and
// polled, so it outlives the 30 s agent exec limit and a dropped channel.
//
// A feature runs at most once at a time and is never started twice for one
// try, whatever happens to the channel or to phoenix. In the guest, under
// featureDir:
//   - NAME.lock is flock'ed by the run for as long as it lives (the starter
//     takes it and the detached runner inherits it; the script itself runs
//     without it, so a daemon it leaves behind does not hold it);
//   - NAME.run is "ID SHA256" of the run that took the lock last, ID chosen
//     by phoenix when it starts it, SHA256 the version (featurePlan.sum);
//   - NAME.rc is "ID EXIT-CODE" and NAME.sha256 the version after a
//     success, both written through a rename by the run that holds the lock,
//     so an old run can never overwrite a newer run's result;
//   - NAME.sh and NAME.json (the context) are written by phoenix, and
//     copied under the lock to NAME.locked.sh and NAME.locked.json, which
//     the run uses, once their sha256 are checked.
//
// The start command is idempotent: it starts nothing when run ID already
// exists (a start sent again after its status was lost), when a run of the
// same version holds the lock (it re-attaches: phoenix follows that run), or
// when NAME.sha256 says that version already succeeded. A run of another
// version still going is an error that says so. The marker makes a re-run
// of the same version a no-op; a changed script (or certificate) runs again.
type feature struct {
	d       deps
	Name    string `json:"name"`
	Timeout int    `json:"timeout_seconds"`
	dir     string // featureDir; a temp directory in tests that run the real lines
}

func newFeature(d deps, params map[string]any) (tasks.Task, error) {
	t := &feature{d: d, dir: featureDir}
	if err := tasks.Decode(params, t); err != nil {
		return nil, err
	}
	if !tasks.ValidFeatureName(t.Name) {
		return nil, fmt.Errorf("feature name %q: want a letter or digit, then letters, digits, '-', '_' or '.'", t.Name)
	}
	return t, nil
}

func (t *feature) timeout() time.Duration { return seconds(t.Timeout, 1800*time.Second) }

func (t *feature) file(ext string) string { return t.dir + "/" + t.Name + ext }

func (t *feature) markerProbe() string { return transport.Command("cat", t.file(".sha256")) }

func (t *feature) GuestProbes(*tasks.Env) []string { return []string{t.markerProbe()} }

// featurePlan is what a run takes: the script and its context (JSON), with
// their sha256, and the version its success is recorded as (sum).
type featurePlan struct {
	script, context       []byte
	scriptSum, contextSum string
	// sum is the script's sha256, or for a feature given certificates
	// (trusted_ca) a sha256 over it and theirs: a changed certificate runs
	// it again. The rest of the context does not: a feature does not run
	// again because the VM's memory changed.
	sum   string
	certs bool
}

func (t *feature) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	// Load first: a missing script or certificate fails the plan, not the apply.
	p, err := t.load(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		return notYet("will run feature "+t.Name, "ran feature "+t.Name), nil
	}
	return t.plan(ctx, env, p)
}

// load reads the script (from the feature directories, else built in) and,
// for trusted_ca, the certificates on the node, and builds the context.
func (t *feature) load(ctx context.Context, env *tasks.Env) (featurePlan, error) {
	s, err := t.d.feature(t.Name, env.FeatureDirs)
	if err != nil {
		return featurePlan{}, err // names NAME.sh; the step names the feature
	}
	var certs []caCert
	if t.Name == inventory.TrustedCAFeature {
		if certs, err = trustedCA(ctx, env); err != nil {
			return featurePlan{}, err
		}
	}
	c, err := buildContext(env, t.Name, certs)
	if err != nil {
		return featurePlan{}, fmt.Errorf("context: %w", err)
	}
	p := featurePlan{script: s, context: c, scriptSum: sha256Hex(s), contextSum: sha256Hex(c), certs: len(certs) > 0}
	p.sum = p.scriptSum
	if p.certs {
		h := sha256.New()
		fmt.Fprintf(h, "script %s\n", p.scriptSum)
		for _, c := range certs {
			fmt.Fprintf(h, "certificate %s %s\n", c.File, c.SHA256)
		}
		p.sum = hex.EncodeToString(h.Sum(nil))
	}
	return p, nil
}

// check is Check once the guest answers, for Apply's replan.
func (t *feature) check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	p, err := t.load(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	return t.plan(ctx, env, p)
}

func (t *feature) plan(ctx context.Context, env *tasks.Env, p featurePlan) (tasks.Change, error) {
	marker, ok, err := probeFile(ctx, env, t.markerProbe())
	if err != nil {
		return tasks.Change{}, err
	}
	done := strings.TrimSpace(string(marker))
	if ok && done == p.sum {
		return tasks.Change{Action: tasks.None, Summary: fmt.Sprintf("feature %s already applied (sha256 %.12s)", t.Name, p.sum)}, nil
	}
	why := "never applied"
	switch {
	case ok && p.certs:
		why = fmt.Sprintf("script or certificates changed since the last success (sha256 %.12s → %.12s)", done, p.sum)
	case ok:
		why = fmt.Sprintf("script changed since the last success (sha256 %.12s → %.12s)", done, p.sum)
	}
	return tasks.Change{
		Action:  tasks.Run,
		Summary: fmt.Sprintf("will run feature %s: %s", t.Name, why),
		Done:    fmt.Sprintf("ran feature %s: %s", t.Name, why),
		Plan:    &p,
		Commands: []string{
			transport.Command("mkdir", "-p", t.dir),
			"write " + t.file(".sh"),
			"write " + t.file(".json") + " (the context)",
			fmt.Sprintf("start %s detached under the lock %s, or re-attach to the run of it holding the lock", t.file(".sh"), t.file(".lock")),
			fmt.Sprintf("poll %s, %s and %s every %s, up to %s", t.file(".lock"), t.file(".rc"), t.file(".log"), t.d.poll, t.timeout()),
		},
	}, nil
}

// runID names one start of a feature: the time phoenix started it, so the
// guest's NAME.run also says when.
func (t *feature) runID() string { return t.d.now().UTC().Format("20060102T150405.000000000Z") }

// startLine starts the feature as run id, or re-attaches (see feature). It
// prints one line: "started ID", "attached ID" (follow run ID),
// "done" (the script already succeeded) or "busy ID SHA256 PID" (a run of
// another version holds the lock).
func (t *feature) startLine(env *tasks.Env, id string, p *featurePlan) string {
	vmid, name := 0, ""
	if env.VM != nil {
		vmid, name = env.VM.VMID, env.VM.Name
	}
	n, sum := transport.Quote(t.Name), transport.Quote(p.sum)
	// The runner: $1 run id, $2 sha256, $3 VMID, $4 VM name; it holds the
	// lock on fd 9. The script gets the VMID as its argument, as the
	// original's did, and the context contract in its environment.
	runner := `echo $$ >"$0.pid"; ` +
		`PHOENIX_FEATURE="$0" PHOENIX_VMID="$3" PHOENIX_VM_NAME="$4" PHOENIX_CONTEXT="$PWD/$0.locked.json" ./"$0.locked.sh" "$3" >"$0.log" 2>&1 9>&-; c=$?; ` +
		`if [ $c -eq 0 ]; then printf '%s\n' "$2" >"$0.sha256.tmp" && mv -f "$0.sha256.tmp" "$0.sha256"; fi; ` +
		`printf '%s %s\n' "$1" $c >"$0.rc.tmp" && mv -f "$0.rc.tmp" "$0.rc"`
	return "cd " + transport.Quote(t.dir) + " || exit 1; " +
		"command -v flock >/dev/null || { echo 'flock(1) (util-linux) is missing in the guest' >&2; exit 1; }; " +
		"read -r id sum 2>/dev/null <" + n + ".run; " +
		"[ \"$id\" = " + transport.Quote(id) + " ] && { echo attached \"$id\"; exit 0; }; " +
		"exec 9>>" + n + ".lock || exit 1; " +
		// Wait a little: a poll holds the lock for an instant to see whether a run has it.
		"if ! flock -w 2 9; then read -r id sum 2>/dev/null <" + n + ".run; " +
		"[ \"$sum\" = " + sum + " ] && { echo attached \"$id\"; exit 0; }; " +
		"echo busy \"${id:--}\" \"${sum:--}\" \"$(cat " + n + ".pid 2>/dev/null || echo -)\"; exit 0; fi; " +
		"[ \"$(cat " + n + ".sha256 2>/dev/null)\" = " + sum + " ] && { echo done; exit 0; }; " +
		// The run executes its own copies, checked under the lock: a script
		// or context written meanwhile by another phoenix cannot run under
		// this version.
		lockedCopy(n, ".sh", p.scriptSum) + lockedCopy(n, ".json", p.contextSum) +
		"rm -f " + n + ".rc " + n + ".log " + n + ".pid && " +
		"printf '%s %s\\n' " + transport.Quote(id) + " " + sum + " >" + n + ".run.tmp && mv -f " + n + ".run.tmp " + n + ".run || exit 1; " +
		"nohup sh -c " + transport.Quote(runner) + " " + n + " " + transport.Quote(id) + " " + sum + " " + strconv.Itoa(vmid) + " " + transport.Quote(name) +
		" </dev/null >/dev/null 2>&1 & " +
		"echo started " + transport.Quote(id)
}

// lockedCopy copies NAME.EXT (n quoted) to NAME.locked.EXT, and fails the
// start unless the copy has sha256 sum.
func lockedCopy(n, ext, sum string) string {
	sum = transport.Quote(sum)
	return "cp " + n + ext + " " + n + ".locked" + ext + " && h=$(sha256sum <" + n + ".locked" + ext + ") && [ \"${h%% *}\" = " + sum + " ] || " +
		"{ printf " + transport.Quote("%s"+ext+" changed while it was started (sha256 %s, want %s): run again\\n") + " " + n + " \"${h%% *}\" " + sum + " >&2; exit 1; }; "
}

func (t *feature) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	p, g, err := planned[featurePlan](ctx, env, c, t.check)
	if p == nil {
		return err
	}
	if _, err := run(ctx, g, transport.Command("mkdir", "-p", t.dir)); err != nil {
		return fmt.Errorf("create %s: %w", t.dir, err)
	}
	if err := g.Put(ctx, t.file(".sh"), bytes.NewReader(p.script), transport.Attrs{Mode: 0o755}); err != nil {
		return fmt.Errorf("write %s: %w", t.file(".sh"), err)
	}
	// Root's only: the config may hold what users keep to themselves.
	if err := g.Put(ctx, t.file(".json"), bytes.NewReader(p.context), transport.Attrs{Mode: 0o600}); err != nil {
		return fmt.Errorf("write %s: %w", t.file(".json"), err)
	}
	id, err := t.start(ctx, env, g, p)
	if err != nil || id == "" {
		return err
	}
	return t.follow(ctx, env, id)
}

// start runs the start line and returns the run to follow ("" when the
// script already succeeded). A start whose status was lost (the agent died
// while it ran) is sent once more, on whatever channel the guest has now:
// with the same run id it starts nothing twice.
func (t *feature) start(ctx context.Context, env *tasks.Env, g tasks.Guest, p *featurePlan) (string, error) {
	line := t.startLine(env, t.runID(), p)
	res, err := run(ctx, g, line)
	if errors.Is(err, transport.ErrStatusUnknown) {
		env.Logf("feature %s: %v; asking again whether it started", t.Name, err)
		if g, err = env.Guest(ctx); err != nil {
			return "", err
		}
		res, err = run(ctx, g, line)
	}
	if err != nil {
		return "", fmt.Errorf("start %s: %w", t.file(".sh"), err)
	}
	f := strings.Fields(string(res.Stdout))
	switch {
	case len(f) == 2 && (f[0] == "started" || f[0] == "attached"):
		if f[0] == "attached" {
			env.Logf("feature %s: re-attached to run %s, already going in the guest", t.Name, f[1])
		}
		return f[1], nil
	case len(f) == 1 && f[0] == "done":
		env.Logf("feature %s: already applied by another run", t.Name)
		return "", nil
	case len(f) == 4 && f[0] == "busy":
		return "", fmt.Errorf("run %s of another version (sha256 %.12s, guest pid %s) is still running; wait for it to end (log %s) or stop it, then run again",
			f[1], f[2], f[3], t.file(".log"))
	}
	return "", fmt.Errorf("start %s: unexpected answer %q", t.file(".sh"), transport.Tail(res.Stdout, 3))
}

// follow polls, in one round trip every poll interval, whether the run
// still holds the lock, its result and the new log bytes, streaming the log
// to env.Out, until run id ends or the timeout. A failing poll (a dropped
// channel, a switch from agent to SSH, a reboot) is retried: the script runs
// on regardless. A run that no longer holds the lock and left no result
// was killed (a reboot): the step fails, and the next run starts it again.
func (t *feature) follow(ctx context.Context, env *tasks.Env, id string) error {
	timeout := t.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		seen    int64  // log bytes streamed so far
		tail    []byte // the last keepLog of them
		pollErr error  // the last failed poll
	)
	for {
		if err := tasks.Sleep(ctx, t.d.poll); err != nil {
			switch {
			case errors.Is(err, context.Canceled): // the run was interrupted: no timeout to report
				return fmt.Errorf("%w (left running: a later run re-attaches to it; log %s)", err, t.file(".log"))
			case pollErr != nil:
				return fmt.Errorf("no answer within %s: %w", timeout, pollErr)
			}
			return fmt.Errorf("still running after %s (left running: a later run re-attaches to it; log %s):\n%s", timeout, t.file(".log"), lastLines(tail, 25))
		}
		g, err := env.Guest(ctx)
		if err != nil {
			return err // no way into the guest is left (its node was lost): polling again cannot help
		}
		res, err := transport.Batch(ctx, g, t.pollLines(seen))
		if pollErr = err; err != nil {
			env.Logf("feature %s: poll: %v (retrying)", t.Name, err)
			continue
		}
		if res[2].ExitCode == 0 {
			out(env).Write(res[2].Stdout)
			seen += int64(len(res[2].Stdout))
			tail = append(tail, res[2].Stdout...)
			if len(tail) > keepLog {
				tail = tail[len(tail)-keepLog:]
			}
		}
		running := res[0].ExitCode != 0 // the lock is held
		rcID, rcText, _ := strings.Cut(strings.TrimSpace(string(res[1].Stdout)), " ")
		if res[1].ExitCode != 0 || rcID != id {
			if running {
				continue // no exit code yet
			}
			return fmt.Errorf("run %s ended without a result (the guest rebooted, or it was killed); the next run starts it again; log %s (last 25 lines):\n%s",
				id, t.file(".log"), lastLines(tail, 25))
		}
		rc, err := strconv.Atoi(rcText)
		if err != nil {
			return fmt.Errorf("unreadable exit code %q in %s", res[1].Stdout, t.file(".rc"))
		}
		if rc != 0 {
			return fmt.Errorf("exit %d; %s (last 25 lines):\n%s", rc, t.file(".log"), lastLines(tail, 25))
		}
		return nil
	}
}

// pollLines are the lock probe (exit 0: no run holds it; it holds the lock
// for an instant, which a starter waits out), the result, then the log from
// offset seen. The probe comes first: a run writes its result before it
// lets go of the lock, so a free lock with no result means none will come.
func (t *feature) pollLines(seen int64) []string {
	return []string{
		transport.Command("flock", "-n", t.file(".lock"), "true"),
		transport.Command("cat", t.file(".rc")),
		transport.Command("tail", "-c", "+"+strconv.FormatInt(seen+1, 10), t.file(".log")),
	}
}
