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

	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

const (
	featureDir = "/var/lib/phoenix/features"
	keepLog    = 64 << 10 // bytes of log kept for the error message
)

// feature is feature: a feature script run in the guest, detached and
// polled, so it outlives the 30 s agent exec limit and a dropped channel.
// A marker holding the script's sha256 makes a re-run of the same script a
// no-op; a changed script runs again.
type feature struct {
	d       deps
	Name    string `json:"name"`
	Timeout int    `json:"timeout_seconds"`
}

func newFeature(d deps, params map[string]any) (tasks.Task, error) {
	t := &feature{d: d}
	if err := tasks.Decode(params, t); err != nil {
		return nil, err
	}
	if !playbooks.ValidFeatureName(t.Name) {
		return nil, fmt.Errorf("feature name %q: want a letter or digit, then letters, digits, '-', '_' or '.'", t.Name)
	}
	return t, nil
}

func (t *feature) timeout() time.Duration { return seconds(t.Timeout, 1800*time.Second) }

func (t *feature) file(ext string) string { return featureDir + "/" + t.Name + ext }

func (t *feature) markerProbe() string { return transport.Command("cat", t.file(".sha256")) }

func (t *feature) GuestProbes(*tasks.Env) []string { return []string{t.markerProbe()} }

type featurePlan struct {
	script []byte
	sum    string
}

func (t *feature) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	// Load the script first: a missing feature fails the plan, not the apply.
	if _, err := t.script(env); err != nil {
		return tasks.Change{}, err
	}
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		return notYet("will run feature "+t.Name, "ran feature "+t.Name), nil
	}
	return t.check(ctx, env)
}

func (t *feature) script(env *tasks.Env) (featurePlan, error) {
	s, err := t.d.feature(t.Name, env.FeatureDirs)
	if err != nil {
		return featurePlan{}, fmt.Errorf("feature %s: %w", t.Name, err)
	}
	sum := sha256.Sum256(s)
	return featurePlan{script: s, sum: hex.EncodeToString(sum[:])}, nil
}

func (t *feature) check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	p, err := t.script(env)
	if err != nil {
		return tasks.Change{}, err
	}
	marker, ok, err := probeFile(ctx, env, t.markerProbe())
	if err != nil {
		return tasks.Change{}, err
	}
	done := strings.TrimSpace(string(marker))
	if ok && done == p.sum {
		return tasks.Change{Action: tasks.None, Summary: fmt.Sprintf("feature %s already applied (sha256 %.12s)", t.Name, p.sum)}, nil
	}
	why := "never applied"
	if ok {
		why = fmt.Sprintf("script changed since the last success (sha256 %.12s → %.12s)", done, p.sum)
	}
	return tasks.Change{
		Action:  tasks.Run,
		Summary: fmt.Sprintf("will run feature %s: %s", t.Name, why),
		Done:    fmt.Sprintf("ran feature %s: %s", t.Name, why),
		Plan:    &p,
		Commands: []string{
			transport.Command("mkdir", "-p", featureDir),
			"write " + t.file(".sh"),
			t.startLine(env),
			fmt.Sprintf("poll %s and %s every %s, up to %s", t.file(".log"), t.file(".rc"), t.d.poll, t.timeout()),
			"write " + t.file(".sha256"),
		},
	}, nil
}

// startLine runs the script detached, every descriptor away from the
// channel, so the command returns at once on the agent and over SSH; the exit
// code lands in .rc through a rename, so a reader never sees half of it.
func (t *feature) startLine(env *tasks.Env) string {
	vmid := 0
	if env.VM != nil {
		vmid = env.VM.VMID
	}
	rc, tmp, log := t.file(".rc"), t.file(".rc.tmp"), t.file(".log")
	run := transport.Command(t.file(".sh"), strconv.Itoa(vmid)) + " >" + transport.Quote(log) + " 2>&1; " +
		"echo $? >" + transport.Quote(tmp) + " && " + transport.Command("mv", tmp, rc)
	return transport.Command("rm", "-f", rc, tmp, log) + "; " +
		"nohup " + transport.Command("sh", "-c", run) + " </dev/null >/dev/null 2>&1 &"
}

func (t *feature) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	p, g, err := planned[featurePlan](ctx, env, c, t.check)
	if p == nil {
		return err
	}
	if _, err := run(ctx, g, transport.Command("mkdir", "-p", featureDir)); err != nil {
		return fmt.Errorf("create %s: %w", featureDir, err)
	}
	if err := g.Put(ctx, t.file(".sh"), bytes.NewReader(p.script), transport.Attrs{Mode: 0o755}); err != nil {
		return fmt.Errorf("write %s: %w", t.file(".sh"), err)
	}
	if _, err := run(ctx, g, t.startLine(env)); err != nil {
		return fmt.Errorf("start feature %s: %w", t.Name, err)
	}
	if err := t.follow(ctx, env); err != nil {
		return err
	}
	g, err = env.Guest(ctx)
	if err != nil {
		return err
	}
	if err := g.Put(ctx, t.file(".sha256"), strings.NewReader(p.sum+"\n"), transport.Attrs{Mode: 0o644}); err != nil {
		return fmt.Errorf("write %s: %w", t.file(".sha256"), err)
	}
	return nil
}

// follow polls the exit code and the new log bytes in one round trip every
// poll interval, streaming the log to env.Out, until the script ends or the
// timeout. A failing poll (a dropped channel, a switch from agent to SSH) is
// retried: the script runs on regardless.
func (t *feature) follow(ctx context.Context, env *tasks.Env) error {
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
				return fmt.Errorf("feature %s: %w (left running; log %s)", t.Name, err, t.file(".log"))
			case pollErr != nil:
				return fmt.Errorf("feature %s: no answer within %s: %w", t.Name, timeout, pollErr)
			}
			return fmt.Errorf("feature %s: still running after %s (left running; log %s):\n%s", t.Name, timeout, t.file(".log"), lastLines(tail, 25))
		}
		lines := []string{transport.Command("cat", t.file(".rc")), transport.Command("tail", "-c", "+"+strconv.FormatInt(seen+1, 10), t.file(".log"))}
		res, err := t.poll(ctx, env, lines)
		if pollErr = err; err != nil {
			env.Logf("feature %s: poll: %v (retrying)", t.Name, err)
			continue
		}
		if res[1].ExitCode == 0 {
			out(env).Write(res[1].Stdout)
			seen += int64(len(res[1].Stdout))
			tail = append(tail, res[1].Stdout...)
			if len(tail) > keepLog {
				tail = tail[len(tail)-keepLog:]
			}
		}
		if res[0].ExitCode != 0 {
			continue // no exit code yet
		}
		rc, err := strconv.Atoi(strings.TrimSpace(string(res[0].Stdout)))
		if err != nil {
			return fmt.Errorf("feature %s: unreadable exit code %q in %s", t.Name, res[0].Stdout, t.file(".rc"))
		}
		if rc != 0 {
			return fmt.Errorf("feature %s: exit %d; %s (last 25 lines):\n%s", t.Name, rc, t.file(".log"), lastLines(tail, 25))
		}
		return nil
	}
}

func (t *feature) poll(ctx context.Context, env *tasks.Env, lines []string) ([]transport.Result, error) {
	g, err := env.Guest(ctx)
	if err != nil {
		return nil, err
	}
	return transport.Batch(ctx, g, lines)
}
