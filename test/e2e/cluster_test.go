package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

const vmid2 = rig.ClusterVMID

// TestCluster is issue 11 on a two-node cluster rig, one lab for all of
// it: the template and 8101 on pve1, 8102 on pve2 cloned across nodes;
// a second run changes nothing; pve2's SSH stopped in the middle of a run
// fails only 8102 and the summary says so, a run after it is back
// converges; 8102 placed on pve1 is drift in plan, --migrate moves it, and
// a run after that changes nothing. Everything is checked from outside
// phoenix (docker exec into the nodes and guests).
func TestCluster(t *testing.T) {
	t.Parallel()
	r := rig.NewCluster(t, 2)
	dir := t.TempDir()
	l := &lab{rig: r, config: filepath.Join(dir, "phoenix_vm_configs.json"), inventory: filepath.Join(dir, "inventory.yml"),
		features: filepath.Join(dir, "features")}
	if err := r.WriteInventory(l.inventory); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.features, 0o755); err != nil {
		t.Fatal(err)
	}
	// The config LAB_NODES=2 make lab-up writes, with more time for a guest
	// on a machine that runs other tests too.
	writeCluster := func(mutate func(vm *rig.ConfigVM)) {
		t.Helper()
		c := r.LabConfig()
		for i := range c.VMs {
			c.VMs[i].AgentTimeoutSeconds = 300
			mutate(&c.VMs[i])
		}
		if err := c.Write(l.config); err != nil {
			t.Fatal(err)
		}
	}
	writeCluster(func(*rig.ConfigVM) {})
	pve1, pve2 := r.Cluster[0], r.Cluster[1]

	t.Run("create across nodes", func(t *testing.T) {
		first := l.createAll(t, "--feature-dir", l.features)
		if s := first.summary(t); first.code != 0 || s.Failed != 0 {
			t.Fatalf("create --all: exit %d, %d failed", first.code, s.Failed)
		}
		cloned := false
		for _, e := range first.ends() {
			if e.VMID == vmid2 && e.Task == "clone from template" {
				cloned = true
				want := "on pve1: qm clone 9000 8102 --name phoenix-rig-test2 --full 1 --target pve2"
				if !slices.Contains(e.Commands, want) || !strings.Contains(e.Summary, "from node pve1 to pve2") {
					t.Errorf("8102's clone: %q %q; want %q", e.Summary, e.Commands, want)
				}
			}
		}
		if !cloned {
			t.Error("no clone step of 8102 in the run")
		}
		l.assertPlaced(t, map[int]string{tmplID: "pve1", vmid: "pve1", vmid2: "pve2"})
		for _, v := range []struct {
			id int
			n  rig.ClusterNode
		}{{vmid, pve1}, {vmid2, pve2}} {
			l.assertConverged(t, v.id, v.n.IP)
		}
		second := l.createAll(t, "--feature-dir", l.features)
		if s := second.summary(t); second.code != 0 || s.Changed != 0 || s.Failed != 0 {
			t.Errorf("second run: exit %d, changed %d, failed %d; want 0, 0, 0", second.code, s.Changed, s.Failed)
		}
	})

	t.Run("a node lost mid-run", func(t *testing.T) {
		// A feature on 8102 that takes a while, so that pve2 goes away while
		// the run works on it.
		if err := os.WriteFile(filepath.Join(l.features, "pause.sh"), []byte("#!/bin/sh\nsleep 5\necho paused\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeCluster(func(vm *rig.ConfigVM) {
			if vm.VMID == vmid2 {
				vm.Features = []string{"pause"}
			}
		})
		lost := l.runUntil(t, vmid2, "feature pause", func() {
			if err := r.SetNodeSSH(context.Background(), pve2.Name, false); err != nil {
				t.Error(err)
			}
		})
		s := lost.summary(t)
		if lost.code != 1 || !slices.Equal(s.FailedNodes, []string{"pve2"}) || s.Failed == 0 {
			t.Errorf("run with pve2 lost: exit %d, failed nodes %q, failed %d; want 1, [pve2], some", lost.code, s.FailedNodes, s.Failed)
		}
		for _, e := range lost.events {
			if e.Event == "vm_end" && (e.VMID == vmid2) != (e.Status == "failed") {
				t.Errorf("vm %d ended %s (%s); want only %d failed", e.VMID, e.Status, e.Error, vmid2)
			}
		}
		if err := r.SetNodeSSH(context.Background(), pve2.Name, true); err != nil {
			t.Fatal(err)
		}
		back := l.createAll(t, "--feature-dir", l.features)
		if s := back.summary(t); back.code != 0 || s.Failed != 0 {
			t.Fatalf("run with pve2 back: exit %d, %d failed", back.code, s.Failed)
		}
		again := l.createAll(t, "--feature-dir", l.features)
		if s := again.summary(t); again.code != 0 || s.Changed != 0 {
			t.Errorf("run after that: exit %d, changed %d; want 0, 0", again.code, s.Changed)
		}
		l.assertConverged(t, vmid2, pve2.IP)
		if out := l.guestOf(t, vmid2, "cat /var/lib/phoenix/features/pause.rc"); !strings.HasSuffix(strings.TrimSpace(out), " 0") {
			t.Errorf("pause feature in 8102: %q, want a recorded success", out)
		}
	})

	t.Run("drift and migrate", func(t *testing.T) {
		writeCluster(func(vm *rig.ConfigVM) {
			if vm.VMID == vmid2 {
				vm.Node, vm.Features = pve1.Name, []string{"pause"}
			}
		})
		drift := "vm 8102 lives on node pve2, the config places it on pve1"
		plan := l.phoenix(t, "plan", "--all", "--feature-dir", l.features, "--detailed-exitcode")
		if plan.code != 2 || !hasStep(plan, vmid2, "node", "changed", drift+"; --migrate moves it (offline)") {
			t.Errorf("plan: exit %d; want 2 with 8102's node step pending: %s", plan.code, drift)
		}
		refused := l.createAll(t, "--feature-dir", l.features)
		if refused.code != 1 || !hasStep(refused, vmid2, "node", "failed", "") || !strings.Contains(refused.stderr, drift+": run again with --migrate") {
			t.Errorf("create without --migrate: exit %d, stderr %q", refused.code, refused.stderr)
		}
		l.assertPlaced(t, map[int]string{vmid2: "pve2"})

		moved := l.createAll(t, "--feature-dir", l.features, "--migrate")
		if moved.code != 0 || !hasStep(moved, vmid2, "node", "changed", "moved vm 8102 from node pve2 to pve1") {
			t.Fatalf("create --migrate: exit %d", moved.code)
		}
		l.assertPlaced(t, map[int]string{tmplID: "pve1", vmid: "pve1", vmid2: "pve1"})
		l.assertConverged(t, vmid2, pve1.IP) // its share now from pve1
		again := l.createAll(t, "--feature-dir", l.features, "--migrate")
		if s := again.summary(t); again.code != 0 || s.Changed != 0 {
			t.Errorf("run after the move: exit %d, changed %d; want 0, 0", again.code, s.Changed)
		}
	})
}

// hasStep reports whether r has a task_end of vmid's step task with status
// and, unless summary is "", that summary.
func hasStep(r result, id int, task, status, summary string) bool {
	for _, e := range r.ends() {
		if e.VMID == id && e.Task == task && e.Status == status && (summary == "" || e.Summary == summary) {
			return true
		}
	}
	return false
}

// assertPlaced checks which node's directory holds each VM's config, as
// pmxcfs's .vmlist says too (docker exec on pve1: the cluster shares
// /etc/pve).
func (l *lab) assertPlaced(t *testing.T, want map[int]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := l.rig.NodeExecOn(ctx, l.rig.Cluster[0].Name, "sh", "-c", "cd /etc/pve && ls nodes/*/qemu-server/ && cat .vmlist")
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("list configs: %v %q", err, res.Stderr)
	}
	var list struct {
		IDs map[string]struct {
			Node string `json:"node"`
		} `json:"ids"`
	}
	if i := strings.Index(res.Stdout, "{"); i < 0 || json.Unmarshal([]byte(res.Stdout[i:]), &list) != nil {
		t.Fatalf("no .vmlist in %q", res.Stdout)
	}
	for id, node := range want {
		if got := list.IDs[fmt.Sprint(id)].Node; got != node {
			t.Errorf("vm %d is on %q, want %s:\n%s", id, got, node, res.Stdout)
		}
		out, err := l.rig.NodeExecOn(ctx, node, "qm", "config", fmt.Sprint(id))
		if err != nil || out.ExitCode != 0 {
			t.Errorf("qm config %d on %s: %v %q", id, node, err, out.Stderr)
		}
	}
}

// assertConverged checks vm's guest: its share mounted from its node's NFS
// address, the node's file injected.
func (l *lab) assertConverged(t *testing.T, id int, nfsServer string) {
	t.Helper()
	if out := l.guestOf(t, id, "findmnt -rn -o TARGET -M /mnt/data; grep -c '^"+nfsServer+":/export/data /mnt/data nfs ' /etc/fstab"); out != "/mnt/data\n1\n" {
		t.Errorf("vm %d: mount and fstab line from %s: %q", id, nfsServer, out)
	}
	if out := l.guestOf(t, id, "cat /etc/motd"); out != l.rig.InjectContent() {
		t.Errorf("vm %d: /etc/motd is %q, want the node's file", id, out)
	}
}

// guestOf runs a shell line in VM id's container (docker exec).
func (l *lab) guestOf(t *testing.T, id int, line string) string {
	t.Helper()
	return l.guestExec(t, id, line).Stdout
}

// runUntil runs `phoenix run create --all` and calls at once the step named
// task of VM id starts, letting the run go on to its end.
func (l *lab) runUntil(t *testing.T, id int, task string, at func()) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, phoenixBinary(t), "--config", l.config, "--inventory", l.inventory, "--output", "json",
		"run", "create", "--all", "--feature-dir", l.features)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res result
	called := false
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON event: %q", sc.Text())
		}
		res.events = append(res.events, e)
		if !called && e.Event == "task_start" && e.VMID == id && e.Task == task {
			at()
			called = true
		}
	}
	io.Copy(io.Discard, out)
	err = cmd.Wait()
	res.stderr = stderr.String()
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	}
	t.Logf("phoenix run create --all (%s of %d)\n%s", task, id, res)
	if !called {
		t.Fatalf("the run never started step %q of vm %d", task, id)
	}
	return res
}
