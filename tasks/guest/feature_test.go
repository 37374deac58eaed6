package guest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

const (
	dockerScript = "#!/bin/sh\nset -e\necho installing docker\n"
	markerProbe  = "cat /var/lib/phoenix/features/docker.sha256"
	featMkdir    = "mkdir -p /var/lib/phoenix/features"
	runID        = "20261126T100000.000000000Z" // deps.now in the tests
	lockProbe    = "flock -n /var/lib/phoenix/features/docker.lock true"
	catRC        = "cat /var/lib/phoenix/features/docker.rc"
)

// dockerContext is the context of feature docker for the world's VM 8101:
// its config (nothing set but the defaults) and phoenix's facts.
const dockerContext = `{
  "agent_timeout_seconds": 300,
  "final_snapshot": "",
  "guest_ssh": {},
  "name": "",
  "network_config": {},
  "phoenix": {
    "context_version": 1,
    "feature": "docker",
    "vmid": 8101
  },
  "snapshots": {},
  "user_config": {},
  "vmid": 8101
}
`

// featStart is the start line of run runID of dockerScript in VM 8101,
// spelled out.
var featStart = `cd /var/lib/phoenix/features || exit 1; ` +
	`command -v flock >/dev/null || { echo 'flock(1) (util-linux) is missing in the guest' >&2; exit 1; }; ` +
	`read -r id sum 2>/dev/null <docker.run; [ "$id" = ` + runID + ` ] && { echo attached "$id"; exit 0; }; ` +
	`exec 9>>docker.lock || exit 1; ` +
	`if ! flock -w 2 9; then read -r id sum 2>/dev/null <docker.run; [ "$sum" = ` + sum(dockerScript) + ` ] && { echo attached "$id"; exit 0; }; ` +
	`echo busy "${id:--}" "${sum:--}" "$(cat docker.pid 2>/dev/null || echo -)"; exit 0; fi; ` +
	`[ "$(cat docker.sha256 2>/dev/null)" = ` + sum(dockerScript) + ` ] && { echo done; exit 0; }; ` +
	`cp docker.sh docker.locked.sh && h=$(sha256sum <docker.locked.sh) && [ "${h%% *}" = ` + sum(dockerScript) + ` ] || ` +
	`{ printf '%s.sh changed while it was started (sha256 %s, want %s): run again\n' docker "${h%% *}" ` + sum(dockerScript) + ` >&2; exit 1; }; ` +
	`cp docker.json docker.locked.json && h=$(sha256sum <docker.locked.json) && [ "${h%% *}" = ` + sum(dockerContext) + ` ] || ` +
	`{ printf '%s.json changed while it was started (sha256 %s, want %s): run again\n' docker "${h%% *}" ` + sum(dockerContext) + ` >&2; exit 1; }; ` +
	`rm -f docker.rc docker.log docker.pid && ` +
	`printf '%s %s\n' ` + runID + ` ` + sum(dockerScript) + ` >docker.run.tmp && mv -f docker.run.tmp docker.run || exit 1; ` +
	`nohup sh -c 'echo $$ >"$0.pid"; ` +
	`PHOENIX_FEATURE="$0" PHOENIX_VMID="$3" PHOENIX_VM_NAME="$4" PHOENIX_CONTEXT="$PWD/$0.locked.json" ./"$0.locked.sh" "$3" >"$0.log" 2>&1 9>&-; c=$?; ` +
	`if [ $c -eq 0 ]; then printf '\''%s\n'\'' "$2" >"$0.sha256.tmp" && mv -f "$0.sha256.tmp" "$0.sha256"; fi; ` +
	`printf '\''%s %s\n'\'' "$1" $c >"$0.rc.tmp" && mv -f "$0.rc.tmp" "$0.rc"' docker ` + runID + ` ` + sum(dockerScript) + ` 8101 '' </dev/null >/dev/null 2>&1 & ` +
	`echo started ` + runID

// poll is one poll round trip: the lock (held: the run lives), the result,
// then the log from offset.
func poll(offset int, running bool, rc transport.Result, log string) fake.Call {
	lock := exit(0, "", "")
	if running {
		lock = exit(1, "", "")
	}
	return fake.Batch([]string{lockProbe, catRC, "tail -c +" + strconv.Itoa(offset) + " /var/lib/phoenix/features/docker.log"}, lock, rc, exit(0, log, ""))
}

var (
	noRC    = exit(1, "", "cat: /var/lib/phoenix/features/docker.rc: No such file or directory\n")
	started = fake.Call{Line: featStart, Result: fake.Out("started " + runID + "\n")}
)

func rcOf(code int) transport.Result { return exit(0, runID+" "+strconv.Itoa(code)+"\n", "") }

func TestFeature(t *testing.T) {
	never := exit(1, "", "cat: /var/lib/phoenix/features/docker.sha256: No such file or directory\n")
	tests := []struct {
		name    string
		marker  transport.Result
		action  tasks.Action
		summary string
		start   []fake.Call // the start line's answers; default: started
		polls   []fake.Call
		wantOut string
		wantErr []string
		wantLog string
	}{
		{
			name:    "already applied",
			marker:  exit(0, sum(dockerScript)+"\n", ""),
			action:  tasks.None,
			summary: "feature docker already applied (sha256 " + sum(dockerScript)[:12] + ")",
		},
		{
			name:    "never applied: runs, streams, the run marks it",
			marker:  never,
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			polls: []fake.Call{
				poll(1, true, noRC, "installing docker\n"),
				poll(19, true, noRC, ""),
				poll(19, false, rcOf(0), "done\n"),
			},
			wantOut: "installing docker\ndone\n",
		},
		{
			name:    "script changed",
			marker:  exit(0, sum("old script")+"\n", ""),
			action:  tasks.Run,
			summary: "will run feature docker: script changed since the last success (sha256 " + sum("old script")[:12] + " → " + sum(dockerScript)[:12] + ")",
			polls:   []fake.Call{poll(1, false, rcOf(0), "ok\n")},
			wantOut: "ok\n",
		},
		{
			name:    "a dropped channel is retried",
			marker:  never,
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			polls: []fake.Call{
				poll(1, true, noRC, "a\n"),
				{Line: transport.BatchScript([]string{lockProbe, catRC, "tail -c +3 /var/lib/phoenix/features/docker.log"}), Err: transport.ErrDisconnected},
				poll(3, false, rcOf(0), "b\n"),
			},
			wantOut: "a\nb\n",
		},
		{
			name:    "failure: exit code and log tail",
			marker:  never,
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			polls: []fake.Call{
				poll(1, true, noRC, "installing docker\n"),
				poll(19, false, rcOf(100), "E: Unable to locate package docker-ce\n"),
			},
			wantOut: "installing docker\nE: Unable to locate package docker-ce\n",
			wantErr: []string{"exit 100; /var/lib/phoenix/features/docker.log (last 25 lines):\ninstalling docker\nE: Unable to locate package docker-ce"},
		},
		{
			name:    "a run of the same script is going: re-attach and take its result",
			marker:  never,
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			start:   []fake.Call{{Line: featStart, Result: fake.Out("attached 20261126T095500.000000000Z\n")}},
			polls: []fake.Call{
				poll(1, true, noRC, "started earlier\n"),
				poll(17, false, exit(0, "20261126T095500.000000000Z 0\n", ""), ""),
			},
			wantOut: "started earlier\n",
			wantLog: "feature docker: re-attached to run 20261126T095500.000000000Z, already going in the guest",
		},
		{
			name:    "the agent died while the start ran: asked again, it re-attaches",
			marker:  never,
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			start: []fake.Call{
				{Line: featStart, Err: &transport.StatusUnknownError{Line: "cd …", Channel: "agent vm 8101", PID: 31, Cause: errors.New("QEMU guest agent is not running")}},
				{Line: featStart, Result: fake.Out("attached " + runID + "\n")},
			},
			polls:   []fake.Call{poll(1, false, rcOf(0), "ok\n")},
			wantOut: "ok\n",
			wantLog: "feature docker: re-attached to run " + runID + ", already going in the guest",
		},
		{
			name:    "applied meanwhile by another run",
			marker:  never,
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			start:   []fake.Call{{Line: featStart, Result: fake.Out("done\n")}},
			wantLog: "feature docker: already applied by another run",
		},
		{
			name:    "another version still running",
			marker:  exit(0, sum("old script")+"\n", ""),
			action:  tasks.Run,
			summary: "will run feature docker: script changed since the last success (sha256 " + sum("old script")[:12] + " → " + sum(dockerScript)[:12] + ")",
			start:   []fake.Call{{Line: featStart, Result: fake.Out("busy 20261126T095500.000000000Z " + sum("old script") + " 4242\n")}},
			wantErr: []string{"run 20261126T095500.000000000Z of another version (sha256 " + sum("old script")[:12] + ", guest pid 4242) is still running; wait for it to end (log /var/lib/phoenix/features/docker.log) or stop it, then run again"},
		},
		{
			name:    "the run was killed (a reboot): no result, a clear error",
			marker:  never,
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			polls: []fake.Call{
				poll(1, true, noRC, "half\n"),
				poll(6, false, noRC, ""),
			},
			wantOut: "half\n",
			wantErr: []string{"run " + runID + " ended without a result (the guest rebooted, or it was killed); the next run starts it again; log /var/lib/phoenix/features/docker.log (last 25 lines):\nhalf"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			var logs []string
			w.env.Log = func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
			w.features["docker"] = dockerScript
			task := w.task("feature", map[string]any{"name": "docker"})
			w.probes(task, tt.marker)
			c := w.check(task)
			if c.Action != tt.action || c.Summary != tt.summary {
				t.Fatalf("got %s %q\nwant %s %q", c.Action, c.Summary, tt.action, tt.summary)
			}
			if c.Action == tasks.None {
				return
			}
			if tt.start == nil {
				tt.start = []fake.Call{started}
			}
			w.guest.Expect(fake.Call{Line: featMkdir})
			w.guest.Expect(tt.start...)
			w.guest.Expect(tt.polls...)
			err := w.apply(task, c)
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want %q", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatal(err)
			}
			if got := w.out.String(); got != tt.wantOut {
				t.Errorf("output %q, want %q", got, tt.wantOut)
			}
			if got := string(w.guest.Files["/var/lib/phoenix/features/docker.sh"]); got != dockerScript || w.guest.Attrs["/var/lib/phoenix/features/docker.sh"].Mode != 0o755 {
				t.Errorf("script %q mode %o", got, w.guest.Attrs["/var/lib/phoenix/features/docker.sh"].Mode)
			}
			if got := string(w.guest.Files["/var/lib/phoenix/features/docker.json"]); got != dockerContext || w.guest.Attrs["/var/lib/phoenix/features/docker.json"].Mode != 0o600 {
				t.Errorf("context mode %o:\n%s\nwant:\n%s", w.guest.Attrs["/var/lib/phoenix/features/docker.json"].Mode, got, dockerContext)
			}
			// The marker is the run's to write (under its lock), never phoenix's.
			if _, ok := w.guest.Files["/var/lib/phoenix/features/docker.sha256"]; ok {
				t.Error("phoenix wrote the marker itself")
			}
			if tt.wantLog != "" && !slices.Contains(logs, tt.wantLog) {
				t.Errorf("logs %q, want %q", logs, tt.wantLog)
			}
		})
	}
}

func TestFeatureNotRunningAndMissing(t *testing.T) {
	w := newWorld(t)
	w.status = ""
	w.features["docker"] = dockerScript
	c := w.check(w.task("feature", map[string]any{"name": "docker"}))
	if c.Action != tasks.Unknown || c.Summary != "will run feature docker" {
		t.Errorf("%s %q", c.Action, c.Summary)
	}
	// A feature that does not exist fails the plan, even before the VM exists.
	_, err := w.task("feature", map[string]any{"name": "nope"}).Check(context.Background(), w.env)
	if err == nil || err.Error() != `feature "nope": not found` {
		t.Errorf("error %v", err)
	}
}

func TestFeatureTimeout(t *testing.T) {
	w := newWorld(t)
	w.features["docker"] = dockerScript
	d := w.deps()
	task, err := newFeature(d, map[string]any{"name": "docker", "timeout_seconds": 1})
	if err != nil {
		t.Fatal(err)
	}
	p := dockerPlan
	w.guest.Expect(fake.Call{Line: featMkdir}, started)
	// Polls every 10 ms for a second: answer "still running" as often as asked.
	inner(task).(*feature).d.poll = 10 * time.Millisecond
	w.env.Guest = func(context.Context) (tasks.Guest, error) { return stillRunning{w.guest}, nil }
	err = task.Apply(context.Background(), w.env, tasks.Change{Action: tasks.Run, Plan: &p})
	if err == nil || !strings.HasPrefix(err.Error(), "still running after 1s (left running: a later run re-attaches to it; log /var/lib/phoenix/features/docker.log):\nstep") {
		t.Errorf("error %v", err)
	}
	if _, ok := w.guest.Files["/var/lib/phoenix/features/docker.sha256"]; ok {
		t.Error("marker written after a timeout")
	}
}

// stillRunning answers every poll with "no exit code yet" and one log line.
type stillRunning struct{ *fake.Transport }

func (s stillRunning) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if strings.Contains(cmd.Line, "tail -c") {
		return fake.Batch(nil, exit(1, "", ""), noRC, exit(0, "step\n", "")).Result, nil
	}
	return s.Transport.Run(ctx, cmd)
}

// dockerPlan is the plan of feature docker that Check makes.
var dockerPlan = featurePlan{script: []byte(dockerScript), context: []byte(dockerContext),
	scriptSum: sum(dockerScript), contextSum: sum(dockerContext), sum: sum(dockerScript)}

func TestFeatureParams(t *testing.T) {
	reg := tasks.Registry{}
	newWorld(t).deps().register(reg)
	for _, name := range []string{"", "../etc", "a/b", "-x", ".hidden", "a b", "_x", "a..b"} {
		if _, err := reg["feature"](map[string]any{"name": name}); err == nil {
			t.Errorf("name %q: no error", name)
		}
	}
}

// An interrupted run is no timeout: the error says it was cancelled, and no
// marker is written.
func TestFeatureCancelled(t *testing.T) {
	w := newWorld(t)
	task := w.task("feature", map[string]any{"name": "docker"})
	p := dockerPlan
	w.guest.Expect(fake.Call{Line: featMkdir}, started)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := task.Apply(ctx, w.env, tasks.Change{Action: tasks.Run, Plan: &p})
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "still running") {
		t.Errorf("error %v, want the cancellation", err)
	}
	if _, ok := w.guest.Files["/var/lib/phoenix/features/docker.sha256"]; ok {
		t.Error("marker written after a cancel")
	}
}

// Once no way into the guest is left (its node's connection broke), the
// step ends with that error instead of polling until its timeout.
func TestFeatureGuestGone(t *testing.T) {
	w := newWorld(t)
	task := w.task("feature", map[string]any{"name": "docker"})
	inner(task).(*feature).d.poll = time.Millisecond
	p := dockerPlan
	w.guest.Expect(fake.Call{Line: featMkdir}, started)
	gone := errors.New("node pve lost: connection lost to root@10.0.0.1:22: EOF")
	asked := 0
	w.env.Guest = func(context.Context) (tasks.Guest, error) {
		if asked++; asked > 1 {
			return nil, gone
		}
		return w.guest, nil
	}
	err := task.Apply(context.Background(), w.env, tasks.Change{Action: tasks.Run, Plan: &p})
	if !errors.Is(err, gone) || asked != 2 {
		t.Errorf("error %v after %d asks, want %q after 2", err, asked, gone)
	}
}
