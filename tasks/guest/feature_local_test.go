package guest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

// localFeature is feature slow with its files (script and context, as
// Apply writes them) in a temp directory of this machine, which plays the
// guest: the real start line and polls run in sh.
func localFeature(t *testing.T, script string) (*feature, *tasks.Env, *featurePlan) {
	t.Helper()
	w := newWorld(t)
	w.features["slow"] = script
	env, d := w.env, w.deps()
	env.Node = local.Shell{}
	env.Guest = func(context.Context) (tasks.Guest, error) { return local.Shell{}, nil }
	d.poll = 20 * time.Millisecond
	task, err := newFeature(d, map[string]any{"name": "slow", "timeout_seconds": 60})
	if err != nil {
		t.Fatal(err)
	}
	f := task.(*feature)
	f.dir = t.TempDir()
	p, err := f.load(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.file(".sh"), p.script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.file(".json"), p.context, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, env, &p
}

// version is p as another version of the feature.
func version(p *featurePlan, v string) *featurePlan {
	o := *p
	o.sum = sum(v)
	return &o
}

func (f *feature) startLocal(t *testing.T, env *tasks.Env, id string, p *featurePlan) string {
	t.Helper()
	res, err := local.Shell{}.Run(context.Background(), transport.Cmd{Line: f.startLine(env, id, p), Timeout: time.Minute})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return strings.TrimSpace(string(res.Stdout))
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// The guard of finding 5 (issue 8): a feature is never started twice while
// a run of it lives, a start sent again re-attaches, a later run takes the
// running one's result, and a run of another version is refused.
func TestFeatureGuardLocal(t *testing.T) {
	gate := t.TempDir() + "/go"
	script := "#!/bin/sh\necho run $$ >> starts\nwhile [ ! -e " + gate + " ]; do sleep 0.02; done\necho finished >> runs\necho 'all done'\n"
	f, env, p := localFeature(t, script)
	ctx := context.Background()

	if got := f.startLocal(t, env, "A", p); got != "started A" {
		t.Fatalf("first start: %q", got)
	}
	// The same start sent again (its status was lost), another phoenix
	// with the same script: both follow run A.
	if got := f.startLocal(t, env, "A", p); got != "attached A" {
		t.Errorf("start A again: %q", got)
	}
	if got := f.startLocal(t, env, "B", p); got != "attached A" {
		t.Errorf("start B while A runs: %q", got)
	}
	// Another version while A runs: refused, naming the run and its pid.
	got := f.startLocal(t, env, "C", version(p, "other"))
	if fields := strings.Fields(got); len(fields) != 4 || fields[0] != "busy" || fields[1] != "A" || fields[2] != p.sum || fields[3] == "-" {
		t.Errorf("start of another version while A runs: %q", got)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.follow(ctx, env, "A"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(readFile(t, f.dir+"/starts"), "run "); n != 1 {
		t.Errorf("the script started %d times, want 1", n)
	}
	if got := readFile(t, f.file(".sha256")); got != p.sum+"\n" {
		t.Errorf("marker %q, want the sum the run wrote", got)
	}
	if got := readFile(t, f.file(".rc")); got != "A 0\n" {
		t.Errorf("rc %q", got)
	}
	// A later start of the same script finds it applied and starts nothing.
	if got := f.startLocal(t, env, "D", p); got != "done" {
		t.Errorf("start after success: %q", got)
	}
	if n := strings.Count(readFile(t, f.dir+"/starts"), "run "); n != 1 {
		t.Errorf("the script started %d times, want 1", n)
	}
}

// A run killed with its guest (a reboot) leaves no result: following it
// fails clearly, and the next start runs the script again.
func TestFeatureRunKilledLocal(t *testing.T) {
	script := "#!/bin/sh\necho run >> starts\nsleep 30\necho finished >> runs\n"
	f, env, p := localFeature(t, script)
	if got := f.startLocal(t, env, "A", p); got != "started A" {
		t.Fatalf("start: %q", got)
	}
	var pid int
	waitLocal(t, "the runner's pid file", func() bool {
		pid, _ = strconv.Atoi(strings.TrimSpace(readFile(t, f.file(".pid"))))
		return pid > 0 && readFile(t, f.dir+"/starts") != ""
	})
	killTree(t, pid)
	err := f.follow(context.Background(), env, "A")
	if err == nil || !strings.Contains(err.Error(), "run A ended without a result (the guest rebooted, or it was killed); the next run starts it again") {
		t.Fatalf("follow of a killed run: %v", err)
	}
	if got := readFile(t, f.file(".rc")); got != "" {
		t.Errorf("a killed run left a result %q", got)
	}
	if got := f.startLocal(t, env, "B", p); got != "started B" {
		t.Errorf("start after the killed run: %q", got)
	}
	var pid2 int
	waitLocal(t, "run B's pid file", func() bool {
		pid2, _ = strconv.Atoi(strings.TrimSpace(readFile(t, f.file(".pid"))))
		return pid2 > 0 && pid2 != pid
	})
	killTree(t, pid2)
}

// killTree kills pid with everything it started, at once, as a reboot
// would: the start line's shell made them one process group (local.Shell
// starts each command in a group of its own, not the test's). It returns
// once every process of the group has exited, as after a reboot: kill(2)
// only sends the signal, and a process in the middle of a system call
// finishes it first. Returning before, the test's TempDir cleanup raced the
// dying run creating its log (a redirection's open, preempted on a busy
// machine) and failed with "directory not empty".
func killTree(t *testing.T, pid int) {
	t.Helper()
	pgid, err := syscall.Getpgid(pid)
	if err != nil || pgid == syscall.Getpgrp() {
		t.Fatalf("process group of %d: %d, %v", pid, pgid, err)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	waitLocal(t, fmt.Sprintf("process group %d to exit", pgid), func() bool { return !groupAlive(t, pgid) })
}

// groupAlive reports whether a process of group pgid has not exited yet. A
// zombie has: its files are closed, and nobody here may reap it (the
// processes were orphaned to init).
func groupAlive(t *testing.T, pgid int) bool {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited and reaped meanwhile
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 3 {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

func waitLocal(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The run executes copies checked under the lock: a script or context that
// is not the one phoenix wrote (another phoenix wrote its version
// meanwhile) is not run under this version.
func TestFeatureStartChecksTheScriptLocal(t *testing.T) {
	f, env, p := localFeature(t, "#!/bin/sh\necho run >> starts\n")
	other := *p
	other.scriptSum = sum("another version")
	res, err := local.Shell{}.Run(context.Background(), transport.Cmd{Line: f.startLine(env, "A", &other), Timeout: time.Minute})
	want := "slow.sh changed while it was started (sha256 " + p.scriptSum + ", want " + sum("another version") + "): run again\n"
	if transport.ExitCode(err) != 1 || string(res.Stderr) != want {
		t.Fatalf("start of a script that is not the one written: %v, stderr %q", err, res.Stderr)
	}
	other = *p
	other.contextSum = sum("another context")
	res, err = local.Shell{}.Run(context.Background(), transport.Cmd{Line: f.startLine(env, "A", &other), Timeout: time.Minute})
	want = "slow.json changed while it was started (sha256 " + p.contextSum + ", want " + sum("another context") + "): run again\n"
	if transport.ExitCode(err) != 1 || string(res.Stderr) != want {
		t.Fatalf("start with a context that is not the one written: %v, stderr %q", err, res.Stderr)
	}
	if readFile(t, f.dir+"/starts") != "" || readFile(t, f.file(".run")) != "" {
		t.Error("the script ran, or a run was recorded")
	}
}

// A script sees its context: the VMID as its argument, the env vars, and
// the context file, the one phoenix wrote, at $PHOENIX_CONTEXT.
func TestFeatureContextLocal(t *testing.T) {
	script := "#!/bin/sh\nset -eu\nprintf '%s\\n' \"$1\" \"$PHOENIX_FEATURE\" \"$PHOENIX_VMID\" \"$PHOENIX_VM_NAME\" \"$PHOENIX_CONTEXT\" > seen\n" +
		"cp \"$PHOENIX_CONTEXT\" seen.json\n"
	f, env, p := localFeature(t, script)
	env.VM.Name = `it's "web" 01`
	*p, _ = f.load(context.Background(), env)
	if err := os.WriteFile(f.file(".json"), p.context, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := f.startLocal(t, env, "A", p); got != "started A" {
		t.Fatalf("start: %q", got)
	}
	if err := f.follow(context.Background(), env, "A"); err != nil {
		t.Fatal(err)
	}
	want := "8101\nslow\n8101\n" + `it's "web" 01` + "\n" + f.file(".locked.json") + "\n"
	if got := readFile(t, f.dir+"/seen"); got != want {
		t.Errorf("the script saw\n%s\nwant\n%s", got, want)
	}
	if got := readFile(t, f.dir+"/seen.json"); got != string(p.context) || !strings.Contains(got, `"name": "it's \"web\" 01"`) {
		t.Errorf("the script read the context\n%s\nwant\n%s", got, p.context)
	}
}
