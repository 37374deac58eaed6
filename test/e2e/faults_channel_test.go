package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

// The fault matrix for the channels into the guest: SSH dropped during a
// transfer, the guest rebooted during a run, the agent dead after it
// started a command. Each checks from outside phoenix (docker exec) that
// nothing was lost: no half-written file under a final name, no step run
// twice, and that a re-run converges.

// waitGuest polls line in the guest (docker exec, not phoenix) until it
// exits 0, up to limit. It returns an error instead of failing the test,
// so it can run beside phoenix in another goroutine.
func (l *lab) waitGuest(line string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		res, err := l.rig.GuestExec(ctx, vmid, "sh", "-c", line)
		if err == nil && res.ExitCode == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited %s for %q in the guest", limit, line)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// guestRun runs a shell line in the guest and returns an error instead of
// failing the test (for a goroutine beside phoenix).
func (l *lab) guestRun(line string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := l.rig.GuestExec(ctx, vmid, "sh", "-c", line)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("guest %q: %w", line, err)
	}
	return nil
}

// TestFaultSSHDroppedDuringTransfer: with the agent off, the guest's sshd
// sessions are killed while a big file is streamed into the guest (over
// SSH as the guest user, through sudo). The step fails with a clear error,
// the destination keeps its old content and mode, nothing half-written is
// left under a final name, and a re-run converges.
func TestFaultSSHDroppedDuringTransfer(t *testing.T) {
	t.Parallel()
	l := newLab(t, nil)
	ctx := context.Background()
	if err := l.rig.SetFault(ctx, vmid, "agent-off", "1"); err != nil {
		t.Fatal(err)
	}
	if res := l.create(t); res.code != 0 {
		t.Fatalf("first create: exit %d", res.code)
	}
	const destState = "sha256sum < " + blobDest + "; stat -c '%a %U:%G' " + blobDest
	before := l.guest(t, destState)
	if want := l.blobSum + "  -\n600 root:root\n"; before != want {
		t.Fatalf("the injected file before the fault:\n%s\nwant:\n%s", before, want)
	}

	// A new, big version of the source: the next run streams it again.
	big := make([]byte, 192<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	if err := l.rig.NodePut(ctx, blobSource, big, 0o600); err != nil {
		t.Fatal(err)
	}
	// As soon as the upload's private directory appears next to the
	// destination, the receiving cat is frozen (so the transfer cannot end
	// first) and the sshd sessions are killed: the connection drops in the
	// middle of the transfer.
	dropped := make(chan error, 1)
	go func() {
		err := l.waitGuest("ls -d /root/.phoenix-* && pgrep -x cat", 5*time.Minute)
		if err == nil {
			err = l.guestRun("pkill -STOP -x cat; pkill -KILL -f '^sshd: [a-z]+(@| \\[priv\\])'; sleep 1; pkill -CONT -x cat; true")
		}
		dropped <- err
	}()
	res := l.create(t)
	if err := <-dropped; err != nil {
		t.Fatal(err)
	}
	if res.code != 1 {
		t.Fatalf("create with SSH dropped during the transfer: exit %d, want 1", res.code)
	}
	failed := failedStep(t, res)
	if failed.Kind != "file_inject" || !strings.Contains(failed.Error, "write "+blobDest+": ") || !strings.Contains(failed.Error, "connection lost") {
		t.Errorf("failed step %q (%s): %s\nwant the injection of %s, saying the connection was lost", failed.Task, failed.Kind, failed.Error, blobDest)
	}
	if after := l.guest(t, destState); after != before {
		t.Errorf("the destination changed:\n%s\nwant:\n%s", after, before)
	}
	// What the broken upload left is inside its private directory (root's,
	// 0700), never under a name of its own next to the destination.
	left := l.guest(t, `cd /root && for f in .[!.]* *; do [ -e "$f" ] && stat -c '%n %F %a %U' "$f"; done; true`)
	for _, line := range strings.Split(strings.TrimSpace(left), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if strings.HasPrefix(name, ".phoenix-") && !strings.HasSuffix(line, " directory 700 root") {
			t.Errorf("upload leftover that is not a private directory: %s", line)
		}
		if strings.Contains(name, "blob") && name != filepath.Base(blobDest) {
			t.Errorf("a file named after the destination was left: %s", line)
		}
	}

	second := l.create(t)
	if second.code != 0 {
		t.Fatalf("create after the connection came back: exit %d", second.code)
	}
	if got, want := l.guest(t, destState), sha256Hex(big)+"  -\n600 root:root\n"; got != want {
		t.Errorf("after the re-run:\n%s\nwant:\n%s", got, want)
	}
	if again := l.create(t); again.code != 0 || again.summary(t).Changed != 0 {
		t.Errorf("third run: exit %d, %d changed, want a converged VM", again.code, again.summary(t).Changed)
	}
}

// TestFaultGuestRebootedDuringFeature: the guest reboots (qm reboot on the
// node) while a slow feature runs. The run fails saying the feature's run
// ended without a result; a re-run starts it again and converges. The
// feature finished exactly once, the features before it did not run again,
// and nothing else ran twice.
func TestFaultGuestRebootedDuringFeature(t *testing.T) {
	t.Parallel()
	l := newLab(t, func(vm *rig.ConfigVM) { vm.Features = append(vm.Features, "slow") })
	slow := "#!/bin/sh\nset -eu\necho started >> /var/lib/phoenix-slow.runs\nsleep 20\necho finished >> /var/lib/phoenix-slow.runs\n"
	if err := os.WriteFile(filepath.Join(l.features, "slow.sh"), []byte(slow), 0o755); err != nil {
		t.Fatal(err)
	}
	rebooted := make(chan error, 1)
	go func() {
		err := l.waitGuest("test -s /var/lib/phoenix-slow.runs", 10*time.Minute)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var res rig.ExecResult
			res, err = l.rig.NodeExec(ctx, "qm", "reboot", fmt.Sprint(vmid))
			if err == nil {
				err = res.Err()
			}
		}
		rebooted <- err
	}()
	res := l.create(t)
	if err := <-rebooted; err != nil {
		t.Fatalf("qm reboot: %v", err)
	}
	if res.code != 1 {
		t.Fatalf("create with the guest rebooted during a feature: exit %d, want 1", res.code)
	}
	failed := failedStep(t, res)
	if failed.Task != "feature slow" || !strings.HasPrefix(failed.Error, "run ") ||
		!strings.Contains(failed.Error, "ended without a result (the guest rebooted, or it was killed)") {
		t.Errorf("failed step %q (%s): %s\nwant feature slow, saying its run ended without a result", failed.Task, failed.Kind, failed.Error)
	}
	if runs := l.guest(t, "cat /var/lib/phoenix-slow.runs"); runs != "started\n" {
		t.Errorf("feature slow before the re-run: %q, want one start, no end", runs)
	}

	if res := l.create(t); res.code != 0 {
		t.Fatalf("create after the reboot: exit %d", res.code)
	}
	if runs := l.guest(t, "cat /var/lib/phoenix-slow.runs"); runs != "started\nstarted\nfinished\n" {
		t.Errorf("feature slow: %q, want the killed start, then one run to its end", runs)
	}
	l.assertBuilt(t) // hello ran once, one fstab line, the files, the snapshot
	if again := l.create(t); again.code != 0 || again.summary(t).Changed != 0 {
		t.Errorf("third run: exit %d, %d changed, want a converged VM", again.code, again.summary(t).Changed)
	}
}

// TestAgentDiesAfterCommandStarted: the agent is killed (pvesim's fault
// agent-kill-after) while `phoenix exec` runs a command through it. The
// command is not run a second time over SSH: phoenix exec fails with
// "status unknown" naming the guest pid, and the command ran once.
func TestAgentDiesAfterCommandStarted(t *testing.T) {
	t.Parallel()
	l := newLab(t, nil)
	if res := l.create(t); res.code != 0 {
		t.Fatalf("create: exit %d", res.code)
	}
	// The fault applies at the VM's next start: qemu-ga dies 15 s after it.
	if err := l.rig.SetFault(context.Background(), vmid, "agent-kill-after", "15"); err != nil {
		t.Fatal(err)
	}
	if out, code := l.node(t, fmt.Sprintf("qm stop %d && qm start %d", vmid, vmid)); code != 0 {
		t.Fatalf("restart the VM: exit %d: %s", code, out)
	}
	if err := l.waitGuest("pgrep -x qemu-ga", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, phoenixBinary(t), "exec", "--config", l.config, "--inventory", l.inventory, fmt.Sprint(vmid), "--",
		"sh", "-c", "echo ran >> /root/exec.runs; sleep 60; echo done >> /root/exec.runs")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("phoenix exec after %s: %v\n%s", took.Round(time.Second), err, stderr.String())
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("phoenix exec with the agent killed mid-command: %v, want exit 1", err)
	}
	for _, want := range []string{"status unknown: started as guest pid ", "check the guest (ps -p "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not say %q", want)
		}
	}
	if out := l.guest(t, "pgrep -x qemu-ga || echo none"); strings.TrimSpace(out) != "none" {
		t.Errorf("qemu-ga still runs (%s): the fault did not happen", out)
	}
	// Run twice, the file would have two lines (and phoenix would have
	// waited for the second one's 60 s).
	if runs := l.guest(t, "cat /root/exec.runs"); runs != "ran\n" {
		t.Errorf("/root/exec.runs = %q, want the command started once and still running", runs)
	}
}
