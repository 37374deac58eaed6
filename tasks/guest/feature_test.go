package guest

import (
	"context"
	"errors"
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
	featStart    = "rm -f /var/lib/phoenix/features/docker.rc /var/lib/phoenix/features/docker.rc.tmp /var/lib/phoenix/features/docker.log; " +
		`nohup sh -c '/var/lib/phoenix/features/docker.sh 8101 >/var/lib/phoenix/features/docker.log 2>&1; echo $? >/var/lib/phoenix/features/docker.rc.tmp && mv /var/lib/phoenix/features/docker.rc.tmp /var/lib/phoenix/features/docker.rc' </dev/null >/dev/null 2>&1 &`
	catRC = "cat /var/lib/phoenix/features/docker.rc"
)

// poll is one poll round trip: the exit code file, then the log from offset.
func poll(offset int, rc transport.Result, log string) fake.Call {
	return fake.Batch([]string{catRC, "tail -c +" + strconv.Itoa(offset) + " /var/lib/phoenix/features/docker.log"}, rc, exit(0, log, ""))
}

var noRC = exit(1, "", "cat: /var/lib/phoenix/features/docker.rc: No such file or directory\n")

func TestFeature(t *testing.T) {
	tests := []struct {
		name       string
		marker     transport.Result
		action     tasks.Action
		summary    string
		polls      []fake.Call
		wantOut    string
		wantErr    []string
		wantMarker bool
	}{
		{
			name:    "already applied",
			marker:  exit(0, sum(dockerScript)+"\n", ""),
			action:  tasks.None,
			summary: "feature docker already applied (sha256 " + sum(dockerScript)[:12] + ")",
		},
		{
			name:    "never applied: runs, streams, marks",
			marker:  exit(1, "", "cat: /var/lib/phoenix/features/docker.sha256: No such file or directory\n"),
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			polls: []fake.Call{
				poll(1, noRC, "installing docker\n"),
				poll(19, noRC, ""),
				poll(19, exit(0, "0\n", ""), "done\n"),
			},
			wantOut:    "installing docker\ndone\n",
			wantMarker: true,
		},
		{
			name:    "script changed",
			marker:  exit(0, sum("old script")+"\n", ""),
			action:  tasks.Run,
			summary: "will run feature docker: script changed since the last success (sha256 " + sum("old script")[:12] + " → " + sum(dockerScript)[:12] + ")",
			polls:   []fake.Call{poll(1, exit(0, "0\n", ""), "ok\n")},
			wantOut: "ok\n", wantMarker: true,
		},
		{
			name:    "a dropped channel is retried",
			marker:  exit(1, "", "cat: /var/lib/phoenix/features/docker.sha256: No such file or directory\n"),
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			polls: []fake.Call{
				poll(1, noRC, "a\n"),
				{Line: transport.BatchScript([]string{catRC, "tail -c +3 /var/lib/phoenix/features/docker.log"}), Err: transport.ErrDisconnected},
				poll(3, exit(0, "0\n", ""), "b\n"),
			},
			wantOut: "a\nb\n", wantMarker: true,
		},
		{
			name:    "failure: exit code and log tail, no marker",
			marker:  exit(1, "", "cat: /var/lib/phoenix/features/docker.sha256: No such file or directory\n"),
			action:  tasks.Run,
			summary: "will run feature docker: never applied",
			polls: []fake.Call{
				poll(1, noRC, "installing docker\n"),
				poll(19, exit(0, "100\n", ""), "E: Unable to locate package docker-ce\n"),
			},
			wantOut: "installing docker\nE: Unable to locate package docker-ce\n",
			wantErr: []string{"feature docker: exit 100; /var/lib/phoenix/features/docker.log (last 25 lines):\ninstalling docker\nE: Unable to locate package docker-ce"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
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
			w.guest.Expect(fake.Call{Line: featMkdir}, fake.Call{Line: featStart})
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
			marker, ok := w.guest.Files["/var/lib/phoenix/features/docker.sha256"]
			if ok != tt.wantMarker || ok && string(marker) != sum(dockerScript)+"\n" {
				t.Errorf("marker %q (written %v), want written %v", marker, ok, tt.wantMarker)
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
	if err == nil || err.Error() != `feature nope: feature "nope": not found` {
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
	p := featurePlan{script: []byte(dockerScript), sum: sum(dockerScript)}
	w.guest.Expect(fake.Call{Line: featMkdir}, fake.Call{Line: featStart})
	// Polls every 10 ms for a second: answer "still running" as often as asked.
	task.(*feature).d.poll = 10 * time.Millisecond
	w.env.Guest = func(context.Context) (tasks.Guest, error) { return stillRunning{w.guest}, nil }
	err = task.Apply(context.Background(), w.env, tasks.Change{Action: tasks.Run, Plan: &p})
	if err == nil || !strings.HasPrefix(err.Error(), "feature docker: still running after 1s (left running; log /var/lib/phoenix/features/docker.log):\nstep") {
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
		return fake.Batch(nil, noRC, exit(0, "step\n", "")).Result, nil
	}
	return s.Transport.Run(ctx, cmd)
}

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
	p := featurePlan{script: []byte(dockerScript), sum: sum(dockerScript)}
	w.guest.Expect(fake.Call{Line: featMkdir}, fake.Call{Line: featStart})
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
