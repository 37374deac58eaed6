package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

// The run-level fault matrix of issue 8: two runs on one VM at once, the
// node's SSH connection dropped mid-run, Ctrl-C during a run. Each asserts
// the node's and the guest's state from outside phoenix and that a re-run
// converges.

// running is a phoenix process whose JSON events are read as they come.
type running struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	mu     sync.Mutex
	events []event
	seen   chan struct{} // signalled on every event
	done   chan struct{}
	res    result
}

// start runs `phoenix --output json create 8101 …` in the background.
func (l *lab) start(t *testing.T, extra ...string) *running {
	t.Helper()
	args := append([]string{"--config", l.config, "--inventory", l.inventory, "--output", "json",
		"run", "playbooks/create.yml", "--vmid", fmt.Sprint(vmid), "--feature-dir", l.features}, extra...)
	p := &running{cmd: exec.Command(phoenixBinary(t), args...), seen: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = event{Event: "not-json", Text: sc.Text()}
			}
			p.mu.Lock()
			p.events = append(p.events, e)
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
		err := p.cmd.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.res = result{events: p.events, stderr: p.stderr.String()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.res.code = ee.ExitCode()
		} else if err != nil {
			p.res.code = -1
		}
	}()
	return p
}

// await waits until an event matches (true) or the run ends (false).
func (p *running) await(t *testing.T, match func(event) bool) bool {
	t.Helper()
	timeout := time.After(10 * time.Minute)
	for {
		p.mu.Lock()
		for _, e := range p.events {
			if match(e) {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-p.done:
			return false
		case <-timeout:
			t.Fatal("no matching event within 10 minutes")
		}
	}
}

// wait returns the finished run, bounded.
func (p *running) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(15 * time.Minute):
		// Its goroutines on stderr, to see what it waits for.
		p.cmd.Process.Signal(syscall.SIGQUIT)
		<-p.done
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("phoenix did not end within 15 minutes\n%s", result{events: p.events, stderr: p.stderr.String()})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("phoenix create (background)\n%s", p.res)
	for _, e := range p.res.events {
		if e.Event == "not-json" {
			t.Errorf("phoenix printed a line that is not a JSON event: %q", e.Text)
		}
	}
	return p.res
}

func taskStarted(task string) func(event) bool {
	return func(e event) bool { return e.Event == "task_start" && e.Task == task }
}

// vmEndError is the error of the VM's vm_end event.
func vmEndError(r result) string {
	for _, e := range r.events {
		if e.Event == "vm_end" {
			return e.Error
		}
	}
	return ""
}

// assertConsistent checks the node from outside: VM 8101 has one config,
// holds no lock, and is no half-made clone.
func (l *lab) assertConsistent(t *testing.T) {
	t.Helper()
	conf, _ := l.node(t, fmt.Sprintf("cat /etc/pve/qemu-server/%d.conf", vmid))
	if strings.Contains(conf, "\nlock:") || strings.HasPrefix(conf, "lock:") || !strings.Contains(conf, "name: ") {
		t.Errorf("vm %d's config on the node:\n%s", vmid, conf)
	}
	ls, _ := l.node(t, "ls /etc/pve/qemu-server/")
	if n := strings.Count(ls, fmt.Sprintf("%d.conf", vmid)); n != 1 {
		t.Errorf("%d configs of vm %d: %s", n, vmid, ls)
	}
}

// TestTwoRunsOnOneVM: two creates of VM 8101 start together. One builds
// it; the other is refused at once with a clear error naming the first,
// and touches nothing. The VM is built once, and a third run has nothing
// to do.
func TestTwoRunsOnOneVM(t *testing.T) {
	t.Parallel()
	l := newLab(t, nil)
	a, b := l.start(t), l.start(t)
	ra, rb := a.wait(t), b.wait(t)
	won, lost := ra, rb
	if ra.code != 0 {
		won, lost = rb, ra
	}
	if won.code != 0 || lost.code != 1 {
		t.Fatalf("exit codes %d and %d, want one 0 and one 1", ra.code, rb.code)
	}
	if msg := vmEndError(lost); !strings.Contains(msg, "another phoenix run is working on this VM (") || !strings.Contains(msg, " pid ") {
		t.Errorf("the refused run says %q, want who holds the VM", msg)
	}
	if n := len(lost.ends()); n != 0 {
		t.Errorf("the refused run ran %d steps", n)
	}
	l.assertBuilt(t)
	l.assertConsistent(t)
	if again := l.create(t); again.code != 0 || again.summary(t).Changed != 0 {
		t.Errorf("third run: exit %d, changed %d; want 0 and 0", again.code, again.summary(t).Changed)
	}
}

// killNodeSSH drops every SSH session on the node (not its listener): what
// a network cut or a restarted sshd does to phoenix's connection.
func (l *lab) killNodeSSH(t *testing.T) {
	t.Helper()
	if out, code := l.node(t, "pkill -KILL -f '^sshd: root@'"); code != 0 {
		t.Fatalf("pkill sshd sessions: exit %d: %s", code, out)
	}
}

// TestNodeConnectionDropped: the node's SSH connection is cut while a
// feature runs in the guest (through the agent, over that connection). The
// run fails naming the node it lost; a re-run converges.
func TestNodeConnectionDropped(t *testing.T) {
	t.Parallel()
	l := newLab(t, func(vm *rig.ConfigVM) { vm.Features = append(vm.Features, "slow") })
	slow := "#!/bin/sh\nset -eu\necho sleeping\nsleep 20\necho awake\n"
	if err := os.WriteFile(filepath.Join(l.features, "slow.sh"), []byte(slow), 0o755); err != nil {
		t.Fatal(err)
	}
	p := l.start(t)
	if !p.await(t, taskStarted("feature slow")) {
		t.Fatalf("the run ended before feature slow:\n%s", p.wait(t))
	}
	time.Sleep(3 * time.Second) // the feature is running in the guest
	l.killNodeSSH(t)
	res := p.wait(t)
	if res.code != 1 {
		t.Fatalf("exit %d after the node's connection dropped, want 1", res.code)
	}
	msg := vmEndError(res)
	if want := "connection lost to root@" + l.rig.NodeAddr(); !strings.Contains(msg, want) {
		t.Errorf("the run says %q, want it to name the lost node (%q)", msg, want)
	}
	// The run lock died with the connection: the re-run is not refused.
	again := l.create(t)
	if again.code != 0 {
		t.Fatalf("re-run after the drop: exit %d", again.code)
	}
	l.assertBuilt(t)
	l.assertConsistent(t)
	if s := l.create(t).summary(t); s.Changed != 0 {
		t.Errorf("a run after the re-run changed %d steps", s.Changed)
	}
}

// batchTempDirs lists the temp directories of batches on the node (mktemp
// -d names them /tmp/tmp.XXXXXXXXXX).
func (l *lab) batchTempDirs(t *testing.T) string {
	t.Helper()
	out, _ := l.node(t, "find /tmp -maxdepth 1 -name 'tmp.*' -type d")
	return out
}

// TestInterruptedRun: Ctrl-C (SIGINT) while the clone step reads the node
// (every qm call made slow): phoenix stops the remote commands, exits 130
// and says "interrupted", and leaves no batch temp directory on the node.
// Then a half-made clone, as a killed qm clone leaves it, is not taken for
// a VM: the run says what to do, and once that is done a run converges.
func TestInterruptedRun(t *testing.T) {
	t.Parallel()
	l := newLab(t, nil)
	ctx := context.Background()
	if before := l.batchTempDirs(t); before != "" {
		t.Fatalf("batch temp dirs on the node before the run:\n%s", before)
	}
	if err := l.rig.SetLatency(ctx, 1500); err != nil {
		t.Fatal(err)
	}
	p := l.start(t)
	if !p.await(t, taskStarted("clone from template")) {
		t.Fatalf("the run ended before the clone step:\n%s", p.wait(t))
	}
	// Its check reads two VMs' state, three slow qm calls each in one batch.
	time.Sleep(2 * time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	res := p.wait(t)
	if res.code != 130 {
		t.Errorf("exit %d after SIGINT, want 130", res.code)
	}
	if last := res.events[len(res.events)-1]; last.Event != "summary" || !last.Interrupted {
		t.Errorf("last event %+v, want the summary saying interrupted", last)
	}
	if !strings.HasSuffix(res.stderr, "phoenix: interrupted\n") {
		t.Errorf("stderr does not end with the interruption:\n%s", res.stderr)
	}
	var stopped bool
	for _, e := range res.ends() {
		stopped = stopped || e.Status == "failed" && strings.HasPrefix(e.Error, "interrupted: ")
	}
	if !stopped {
		t.Error("no step reports it was interrupted")
	}
	if left := l.batchTempDirs(t); left != "" {
		t.Errorf("batch temp dirs left on the node:\n%s", left)
	}
	if err := l.rig.SetLatency(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// What a killed qm clone leaves: the temporary config, locked.
	l.node(t, fmt.Sprintf("qm destroy %d --skiplock 1 >/dev/null 2>&1; printf '# qmclone temporary file\\nlock: clone\\n' > /etc/pve/qemu-server/%d.conf", vmid, vmid))
	half := l.create(t)
	if half.code != 1 {
		t.Fatalf("create over a half-made clone: exit %d, want 1", half.code)
	}
	advice := fmt.Sprintf("qm destroy %d --skiplock 1 --destroy-unreferenced-disks 1", vmid)
	if msg := vmEndError(half); !strings.Contains(msg, "holds lock: clone") || !strings.Contains(msg, advice) {
		t.Fatalf("the run says %q, want the lock named and %q", msg, advice)
	}
	if out, code := l.node(t, advice); code != 0 {
		t.Fatalf("%s: exit %d: %s", advice, code, out)
	}
	if res := l.create(t); res.code != 0 {
		t.Fatalf("create after following the advice: exit %d", res.code)
	}
	l.assertBuilt(t)
	l.assertConsistent(t)
}
