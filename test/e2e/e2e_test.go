// Package e2e proves phoenix's main job on the rig: create VM 8101 from its
// config, converge on a second run, plan without writing, survive a missing
// or dying guest agent, fail clearly when nothing answers, and delete. The
// phoenix binary is built once and run as a person would run it; the guest's
// state is checked from outside phoenix, through docker exec.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/test/rig"
)

const vmid = rig.TestVMID

// lab is one rig with a config and an inventory for phoenix.
type lab struct {
	rig       *rig.Rig
	config    string
	inventory string
	features  string
	blobSum   string // sha256 of the binary file injected next to the rig's text file
}

const (
	// password is the VM's user_config.password: it must never be printed.
	password = "Phoenix-s3cret-pw!"
	// blobSource is a multi-MiB binary file on the node, injected to blobDest:
	// large files must cross both the agent (chunked) and SFTP intact.
	blobSource = "/root/rig-files/blob.bin"
	blobDest   = "/root/blob.bin"
	blobSize   = 6<<20 + 12345
)

// helloFeature is a feature script shipped by the test (--feature-dir): cheap
// to run, and its marker file shows it ran exactly once.
const helloFeature = `#!/bin/sh
set -eu
echo "hello from $(hostname)"
date +%s%N >> /var/lib/phoenix-hello.runs
`

func newLab(t *testing.T, mutate func(*rig.ConfigVM)) *lab {
	t.Helper()
	r := rig.New(t)
	dir := t.TempDir()
	l := &lab{rig: r, config: filepath.Join(dir, "phoenix_vm_configs.json"),
		inventory: filepath.Join(dir, "inventory.yml"), features: filepath.Join(dir, "features")}
	blob := make([]byte, blobSize)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(blob)
	l.blobSum = hex.EncodeToString(sum[:])
	if err := r.NodePut(context.Background(), blobSource, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	l.writeConfig(t, func(vm *rig.ConfigVM) {
		vm.Features = []string{"hello"}
		vm.UserConfig.Password = password
		vm.FileInjections = append(vm.FileInjections, inventory.FileInjection{Source: blobSource, Destination: blobDest, Mode: "0600"})
		if mutate != nil {
			mutate(vm)
		}
	})
	if err := r.WriteInventory(l.inventory); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.features, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.features, "hello.sh"), []byte(helloFeature), 0o755); err != nil {
		t.Fatal(err)
	}
	return l
}

// writeConfig writes the rig's config with VM 8101 changed by mutate.
func (l *lab) writeConfig(t *testing.T, mutate func(*rig.ConfigVM)) {
	t.Helper()
	cfg := l.rig.VMConfig()
	for i := range cfg.VMs {
		if cfg.VMs[i].VMID == vmid {
			mutate(&cfg.VMs[i])
		}
	}
	if err := cfg.Write(l.config); err != nil {
		t.Fatal(err)
	}
}

// event is one JSON Lines event of `phoenix --output json`.
type event struct {
	Event     string `json:"event"`
	VMID      int    `json:"vmid"`
	Task      string `json:"task"`
	Kind      string `json:"kind"`
	Status    string `json:"status"`
	Action    string `json:"action"`
	Summary   string `json:"summary"`
	Diff      string `json:"diff"`
	Details   string `json:"details"`
	Transport string `json:"transport"`
	Error     string `json:"error"`
	Text      string `json:"text"`
	OK        int    `json:"ok"`
	Changed   count  `json:"changed"` // a bool on task_end, a count on summary
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	// Interrupted is the summary's mark of a run stopped by Ctrl-C.
	Interrupted bool     `json:"interrupted"`
	Commands    []string `json:"commands"`
	FailedNodes []string `json:"failed_nodes"`
}

// count is a summary's number; task_end's boolean "changed" reads as 0 or 1.
type count int

func (c *count) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*c = 1
		return nil
	case "false":
		*c = 0
		return nil
	}
	var n int
	err := json.Unmarshal(b, &n)
	*c = count(n)
	return err
}

type result struct {
	code   int
	events []event
	stderr string
}

func (r result) summary(t *testing.T) event {
	t.Helper()
	if len(r.events) == 0 || r.events[len(r.events)-1].Event != "summary" {
		t.Fatalf("last event is not a summary; stderr:\n%s", r.stderr)
	}
	return r.events[len(r.events)-1]
}

// ends returns the task_end events.
func (r result) ends() []event {
	var out []event
	for _, e := range r.events {
		if e.Event == "task_end" {
			out = append(out, e)
		}
	}
	return out
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "exit %d\n", r.code)
	for _, e := range r.events {
		switch e.Event {
		case "task_end":
			fmt.Fprintf(&b, "  %-28s %-8s %-6s %s %s\n", e.Task, e.Status, e.Transport, e.Summary, e.Error)
		case "log", "error":
			fmt.Fprintf(&b, "  [%s] %s%s\n", e.Event, e.Text, e.Error)
		}
	}
	if r.stderr != "" {
		fmt.Fprintf(&b, "stderr:\n%s", r.stderr)
	}
	return b.String()
}

// phoenix runs the binary with --output json against the lab.
func (l *lab) phoenix(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	full := append([]string{"--config", l.config, "--inventory", l.inventory, "--output", "json"}, args...)
	cmd := exec.CommandContext(ctx, phoenixBinary(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run phoenix %v: %v", args, err)
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("phoenix %v printed a line that is not a JSON event: %q: %v", args, sc.Text(), err)
		}
		res.events = append(res.events, e)
	}
	t.Logf("phoenix %s\n%s", strings.Join(args, " "), res)
	if strings.Contains(stdout.String(), password) || strings.Contains(stderr.String(), password) {
		t.Errorf("phoenix %v printed the VM's password", args)
	}
	noReferences(t, args, stdout.String()+stderr.String())
	return res
}

// noReferences fails the test when out, what phoenix printed for a person
// or a program, shows playbook syntax (`${…}`) instead of words.
func noReferences(t *testing.T, args []string, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "${") {
			t.Errorf("phoenix %v printed a line with ${: %q", args, line)
		}
	}
}

// tenses fails the test unless every changed step of r is worded in the
// future when r is a dry run ("will …") and in the past when it is not.
func tenses(t *testing.T, r result, dryRun bool) {
	t.Helper()
	for _, e := range r.ends() {
		if e.Status != "changed" {
			continue
		}
		if future := strings.Contains(e.Summary, "will "); future != dryRun {
			t.Errorf("step %q (dry run %v): %q", e.Task, dryRun, e.Summary)
		}
	}
}

// exec runs `phoenix exec VMID -- argv…` and returns its stdout and exit code.
func (l *lab) exec(t *testing.T, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"exec", "--config", l.config, "--inventory", l.inventory, fmt.Sprint(vmid), "--"}, argv...)
	cmd := exec.CommandContext(ctx, phoenixBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), ee.ExitCode()
	}
	t.Fatalf("phoenix %v: %v\n%s", args, err, stderr.String())
	return "", -1
}

func (l *lab) create(t *testing.T, extra ...string) result {
	t.Helper()
	return l.phoenix(t, append([]string{"run", "playbooks/create.yml", "--vmid", fmt.Sprint(vmid), "--feature-dir", l.features}, extra...)...)
}

// guest runs a shell line in the VM's container (docker exec: not phoenix).
func (l *lab) guest(t *testing.T, line string) string {
	t.Helper()
	res := l.guestExec(t, vmid, line)
	if err := res.Err(); err != nil {
		t.Fatalf("guest exec %q: %v", line, err)
	}
	return res.Stdout
}

// guestExec runs line in VM id's guest (docker exec, not phoenix); a
// failed exec fails the test, a non-zero exit is the caller's to judge.
func (l *lab) guestExec(t *testing.T, id int, line string) rig.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := l.rig.GuestExec(ctx, id, "sh", "-c", line)
	if err != nil {
		t.Fatalf("guest %d exec %q: %v", id, line, err)
	}
	return res
}

func (l *lab) node(t *testing.T, line string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := l.rig.NodeExec(ctx, "sh", "-c", line)
	if err != nil {
		t.Fatalf("node exec %q: %v", line, err)
	}
	return res.Stdout + res.Stderr, res.ExitCode
}

// fingerprint is the VM's state as seen from outside phoenix: its qm config
// and snapshots on the node; fstab (and its backups), the injected file, the
// feature's runs and the mounts in the guest.
func (l *lab) fingerprint(t *testing.T) string {
	t.Helper()
	node, _ := l.node(t, fmt.Sprintf("qm config %d 2>&1; qm listsnapshot %d 2>&1; ls /var/lib/vz/snippets", vmid, vmid))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exists, running, err := l.rig.GuestRunning(ctx, vmid)
	if err != nil {
		t.Fatal(err)
	}
	guest := fmt.Sprintf("container exists=%v running=%v", exists, running)
	if running {
		guest += "\n" + l.guest(t, `cat /etc/fstab; ls /etc/fstab*; sha256sum /etc/motd; `+
			`cat /var/lib/phoenix-hello.runs 2>/dev/null; findmnt -rn -o TARGET,SOURCE -M /mnt/data; true`)
	}
	return node + "\n--- guest\n" + guest
}

// assertBuilt checks the guest from outside: share mounted with exactly one
// fstab line, injected file byte-identical to the node's source, the feature
// ran once, final-form snapshot present.
func (l *lab) assertBuilt(t *testing.T) {
	t.Helper()
	if out := l.guest(t, "findmnt -rn -o TARGET -M /mnt/data"); strings.TrimSpace(out) != "/mnt/data" {
		t.Errorf("/mnt/data is not mounted in the guest: findmnt says %q", out)
	}
	fstab := l.guest(t, "cat /etc/fstab")
	if n := strings.Count(fstab, " /mnt/data "); n != 1 {
		t.Errorf("fstab has %d lines for /mnt/data, want 1:\n%s", n, fstab)
	}
	want := sha256.Sum256([]byte(l.rig.InjectContent()))
	got := strings.Fields(l.guest(t, "sha256sum /etc/motd"))[0]
	if got != hex.EncodeToString(want[:]) {
		t.Errorf("/etc/motd sha256 %s, want the node source's %x", got, want)
	}
	if got := strings.Fields(l.guest(t, "sha256sum "+blobDest+"; stat -c %a "+blobDest)); len(got) != 3 || got[0] != l.blobSum || got[2] != "600" {
		t.Errorf("%s in the guest: %v, want sha256 %s mode 600", blobDest, got, l.blobSum)
	}
	// The share is the node's export: a file written on the node is seen in the guest.
	l.node(t, "echo from-node > /export/data/probe")
	if out := l.guest(t, "cat /mnt/data/probe"); out != "from-node\n" {
		t.Errorf("guest reads %q from the share, want the node's file", out)
	}
	if out := l.guest(t, "wc -l < /var/lib/phoenix-hello.runs"); strings.TrimSpace(out) != "1" {
		t.Errorf("feature hello ran %s times, want 1", strings.TrimSpace(out))
	}
	snaps, _ := l.node(t, fmt.Sprintf("qm listsnapshot %d", vmid))
	if !hasSnapshot(snaps, "final-form") {
		t.Errorf("no final-form snapshot:\n%s", snaps)
	}
}

func hasSnapshot(listing, name string) bool {
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(strings.TrimLeft(line, " `->"))
		if len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// TestCreate8101 is the main job end to end: plan, create, converge, delete.
func TestCreate8101(t *testing.T) {
	t.Parallel()
	l := newLab(t, nil)

	// Dry run on a fresh config: pending changes (exit 2), nothing written.
	before := l.fingerprint(t)
	plan := l.create(t, "--dry-run", "--diff", "--detailed-exitcode")
	if plan.code != 2 {
		t.Fatalf("dry run exit %d, want 2 (changes pending)", plan.code)
	}
	if s := plan.summary(t); s.Failed != 0 {
		t.Fatalf("dry run reports %d failed steps", s.Failed)
	}
	if after := l.fingerprint(t); after != before {
		t.Fatalf("dry run changed the VM:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	tenses(t, plan, true)
	planned := map[string]bool{}
	for _, e := range plan.ends() {
		if e.Status == "changed" {
			planned[e.Task] = true
		}
	}

	// The real run makes exactly changes the plan listed.
	first := l.create(t)
	if first.code != 0 {
		t.Fatalf("create exit %d", first.code)
	}
	if s := first.summary(t); s.Changed == 0 || s.Failed != 0 {
		t.Fatalf("create summary changed=%d failed=%d", s.Changed, s.Failed)
	}
	for _, e := range first.ends() {
		if e.Status == "changed" && !planned[e.Task] {
			t.Errorf("create changed %q, which the dry run did not list", e.Task)
		}
	}
	tenses(t, first, false)
	l.assertBuilt(t)

	// A second run changes nothing, and the VM's state is identical.
	converged := l.fingerprint(t)
	second := l.create(t)
	if second.code != 0 {
		t.Fatalf("second create exit %d", second.code)
	}
	if s := second.summary(t); s.Changed != 0 || s.Failed != 0 {
		t.Errorf("second run summary changed=%d failed=%d, want 0 and 0", s.Changed, s.Failed)
	}
	if again := l.fingerprint(t); again != converged {
		t.Errorf("second run changed the VM:\nbefore:\n%s\nafter:\n%s", converged, again)
	}
	// The creating run read `cloud-init status --long`; the no-op run read
	// cloud-init's files and started no Python in the guest.
	for _, c := range []struct {
		run  result
		want string
	}{{first, "boot_status_code: "}, {second, "(read from /run/cloud-init/result.json and status.json)"}} {
		for _, e := range c.run.ends() {
			if e.Kind == "cloud_init" && (e.Status != "ok" || !strings.Contains(e.Details, c.want)) {
				t.Errorf("cloud-init step %s, details %q: want %q in them", e.Status, e.Details, c.want)
			}
		}
	}
	// And a plan of a converged VM has nothing pending (exit 0).
	if replan := l.create(t, "--dry-run", "--detailed-exitcode"); replan.code != 0 {
		t.Errorf("dry run of a converged VM exit %d, want 0", replan.code)
	}

	// phoenix exec runs a command in the guest and exits with its code.
	if out, code := l.exec(t, "cat", "/etc/motd"); code != 0 || out != l.rig.InjectContent() {
		t.Errorf("phoenix exec cat /etc/motd: exit %d, output %q", code, out)
	}
	if _, code := l.exec(t, "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("phoenix exec of a command exiting 7 exited %d", code)
	}

	// Delete removes the VM and forgets its pinned host key.
	del := l.phoenix(t, "delete", fmt.Sprint(vmid))
	if del.code != 0 {
		t.Fatalf("delete exit %d", del.code)
	}
	if out, code := l.node(t, fmt.Sprintf("qm status %d", vmid)); code == 0 || !strings.Contains(out, "does not exist") {
		t.Errorf("after delete, qm status says (exit %d) %q", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if exists, _, err := l.rig.GuestRunning(ctx, vmid); err != nil || exists {
		t.Errorf("after delete the guest container exists=%v (err %v)", exists, err)
	}
	pins, _ := os.ReadFile(l.rig.GuestKnownHosts)
	if strings.Contains(string(pins), fmt.Sprintf("phoenix-vm-%d", vmid)) {
		t.Errorf("after delete the guest key is still pinned:\n%s", pins)
	}
}

// guestTransports lists which channel each in-guest step used, in order.
func guestTransports(r result) []string {
	var out []string
	for _, e := range r.ends() {
		if e.Transport == "agent" || e.Transport == "ssh" {
			out = append(out, e.Task+"="+e.Transport)
		}
	}
	return out
}

// TestCreateWithoutAgent: the agent never starts; everything in the guest
// goes over SSH, through the node as a jump host, and the result is the same.
func TestCreateWithoutAgent(t *testing.T) {
	t.Parallel()
	l := newLab(t, nil)
	// Guests are often reachable only from the node: go through it.
	inv, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	jump := strings.Replace(string(inv), "via: direct", "via: jump", 1)
	if jump == string(inv) {
		t.Fatalf("the rig's inventory has no \"via: direct\" to change:\n%s", inv)
	}
	if err := os.WriteFile(l.inventory, []byte(jump), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.rig.SetFault(context.Background(), vmid, "agent-off", "1"); err != nil {
		t.Fatal(err)
	}
	res := l.create(t)
	if res.code != 0 {
		t.Fatalf("create without agent exit %d", res.code)
	}
	used := guestTransports(res)
	if len(used) == 0 {
		t.Fatal("no step ran in the guest")
	}
	jumped := false
	for _, e := range res.events {
		jumped = jumped || e.Event == "log" && strings.Contains(e.Text, "steps run over ssh") && strings.Contains(e.Text, " via root@")
	}
	if !jumped {
		t.Error("no log line says the guest's SSH went through the node")
	}
	for _, u := range used {
		if !strings.HasSuffix(u, "=ssh") {
			t.Errorf("step %s, want ssh: the agent never started", u)
		}
	}
	l.assertBuilt(t)
	if again := l.create(t); again.summary(t).Changed != 0 {
		t.Errorf("second run over SSH changed %d steps", again.summary(t).Changed)
	}
}

// TestAgentDiesMidRun: the agent answers at first and dies while a feature
// runs in the guest; the run re-attaches to the feature over SSH (it is not
// started a second time) and finishes over SSH. The feature kills qemu-ga
// itself, so the agent dies at that point and not in the middle of another
// step's command (which, its end unseen, would fail as "status unknown":
// TestAgentDiesAfterCommandStarted).
func TestAgentDiesMidRun(t *testing.T) {
	t.Parallel()
	l := newLab(t, func(vm *rig.ConfigVM) { vm.Features = append(vm.Features, "slow") })
	slow := "#!/bin/sh\nset -eu\necho sleeping\necho started >> /var/lib/phoenix-slow.runs\n" +
		"sleep 3\npkill -x qemu-ga\nsleep 15\necho awake\necho finished >> /var/lib/phoenix-slow.runs\n"
	if err := os.WriteFile(filepath.Join(l.features, "slow.sh"), []byte(slow), 0o755); err != nil {
		t.Fatal(err)
	}
	res := l.create(t)
	if res.code != 0 {
		t.Fatalf("create with a dying agent exit %d", res.code)
	}
	used := guestTransports(res)
	if len(used) == 0 || !strings.HasSuffix(used[0], "=agent") || !strings.HasSuffix(used[len(used)-1], "=ssh") {
		t.Errorf("guest steps used %v: want the agent first and SSH at the end", used)
	}
	if out := l.guest(t, "pgrep -x qemu-ga || echo none"); strings.TrimSpace(out) != "none" {
		t.Errorf("qemu-ga still runs (%s): the fault did not happen", out)
	}
	if runs := l.guest(t, "cat /var/lib/phoenix-slow.runs"); runs != "started\nfinished\n" {
		t.Errorf("feature slow ran %q, want once, to its end", runs)
	}
	l.assertBuilt(t)
}

// TestNothingAnswers: neither the agent nor SSH comes up; the run fails
// within the VM's agent timeout, says what it tried, and writes nothing in
// the guest.
func TestNothingAnswers(t *testing.T) {
	t.Parallel()
	l := newLab(t, func(vm *rig.ConfigVM) { vm.AgentTimeoutSeconds = 20 })
	ctx := context.Background()
	if err := l.rig.SetFault(ctx, vmid, "agent-off", "1"); err != nil {
		t.Fatal(err)
	}
	if err := l.rig.SetFault(ctx, vmid, "ssh-off", "1"); err != nil {
		t.Fatal(err)
	}
	res := l.create(t)
	if res.code != 1 {
		t.Fatalf("create with nothing answering exit %d, want 1", res.code)
	}
	var failed event
	for _, e := range res.ends() {
		if e.Status == "failed" {
			failed = e
		}
	}
	if failed.Kind != "guest_wait" {
		t.Fatalf("failed step %q (%s), want the guest wait", failed.Task, failed.Kind)
	}
	for _, want := range []string{"agent", "QEMU guest agent is not running", "ssh"} {
		if !strings.Contains(failed.Error, want) {
			t.Errorf("error %q does not say %q", failed.Error, want)
		}
	}
	// Nothing in the guest was touched: no fstab line, no backup, no injected
	// file, no feature.
	state := l.guest(t, `grep -c /mnt/data /etc/fstab; ls /etc/fstab*; grep -c phoenix /etc/motd; ls /var/lib/phoenix-hello.runs 2>&1; true`)
	want := "0\n/etc/fstab\n0\nls: cannot access '/var/lib/phoenix-hello.runs': No such file or directory\n"
	if state != want {
		t.Errorf("guest files changed:\n%s\nwant:\n%s", state, want)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// phoenixBinary builds cmd/phoenix once per test binary.
func phoenixBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "phoenix-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		binPath = filepath.Join(dir, "phoenix")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/phoenix")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/phoenix: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
