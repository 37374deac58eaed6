// Package bench measures phoenix: how long a no-op run and a plan of VM 8101
// (and of 10 and 50 VMs on one node) take on the rig, and what they cost in
// SSH connections, qm/pvesh processes, guest agent connections and execs
// (counts, reported with b.ReportMetric and held to the promise: one SSH
// connection to the node, no qm process, one batched exec in each guest). Small in-process benchmarks cover the
// hot pure functions. compare.sh runs phoenix, Ansible and spot side by
// side on one rig; docs/BENCHMARKS.md has the numbers.
//
// Only benchmarks need the rig; they share one, started by the first of them
// and removed by TestMain; the many-VM benchmarks add their VMs to it.
// PHOENIX_BENCH_BIN names a phoenix binary to measure instead of building
// ./cmd/phoenix (another version, or a tree that others are editing).
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"

	"github.com/phoenix-hv/phoenix/test/rig"
)

const vmid = rig.TestVMID

// pvesim's call counting (test/pvesim/calls.go).
const (
	countSwitch = "/etc/pvesim/count_calls"
	callsLog    = "/var/log/pvesim/calls.log"
)

// lab is the rig with VM 8101 created and converged by phoenix, and with
// more VMs like it once a many-VM benchmark asked for them.
type lab struct {
	rig       *rig.Rig
	docker    *dockertest.Pool // reads the node's sshd log (docker logs)
	binDir    string
	bin       string
	config    string
	inventory string
	vms       int // VMs 8101… created and converged
}

// shared is the one lab of this test binary. Package state, because
// benchmarks are separate functions and the rig takes a minute to set up.
var shared struct {
	mu  sync.Mutex
	lab *lab
	err error
}

// theLab returns the shared lab, starting it on first use.
func theLab(b *testing.B) *lab {
	b.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.lab == nil && shared.err == nil {
		shared.lab, shared.err = startLab(b)
	}
	if shared.err != nil {
		b.Fatalf("lab: %v", shared.err)
	}
	return shared.lab
}

func closeLab() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.lab != nil {
		shared.lab.close()
		shared.lab = nil
	}
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(injectChildEnv); spec != "" {
		os.Exit(injectChild(spec)) // BenchmarkInject's child: no lab of its own
	}
	// An interrupt skips the deferred close: remove the rig first.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		closeLab()
		os.Exit(130)
	}()
	code := m.Run()
	signal.Stop(sig)
	closeLab()
	os.Exit(code)
}

// startLab starts a rig, builds phoenix, creates VM 8101 and checks that a
// second run changes nothing, then turns pvesim's call counting on.
func startLab(b *testing.B) (_ *lab, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l := &lab{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.binDir, err = os.MkdirTemp("", "phoenix-bench-"); err != nil {
		return nil, err
	}
	if l.bin = os.Getenv("PHOENIX_BENCH_BIN"); l.bin == "" {
		if l.bin, err = buildPhoenix(ctx, l.binDir); err != nil {
			return nil, err
		}
	}
	if l.docker, err = dockertest.NewPool(""); err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	if l.rig, err = rig.Start(ctx, rig.Options{Log: b.Logf}); err != nil {
		return nil, err
	}
	l.config = filepath.Join(l.binDir, "phoenix_vm_configs.json")
	l.inventory = filepath.Join(l.binDir, "inventory.yml")
	if err := l.rig.VMConfig().Write(l.config); err != nil {
		return nil, err
	}
	if err := l.rig.WriteInventory(l.inventory); err != nil {
		return nil, err
	}
	for i, want := range []string{"create", "converge"} {
		r, err := l.phoenix(ctx, createArgs()...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", want, err)
		}
		if r.code != 0 || r.Failed != 0 || (i == 1 && r.Changed != 0) {
			return nil, fmt.Errorf("%s: exit %d, changed %d, failed %d:\n%s", want, r.code, r.Changed, r.Failed, r.out)
		}
	}
	for _, f := range []string{callsLog, countSwitch} {
		if err := l.rig.NodePut(ctx, f, nil, 0o644); err != nil {
			return nil, fmt.Errorf("turn on call counting: %w", err)
		}
	}
	return l, nil
}

// maxVMs is the most VMs a benchmark may ask for (the rig's addresses allow 150).
const maxVMs = 50

// grow makes the lab hold n VMs: it writes a config of n VMs like 8101
// (8101…8100+n at GuestIP(1…n)) and lets phoenix create the new ones and
// check that a second run changes nothing.
func (l *lab) grow(ctx context.Context, n int) error {
	if n <= l.vms {
		return nil
	}
	if n > maxVMs {
		return fmt.Errorf("%d VMs: the lab holds at most %d", n, maxVMs)
	}
	cfg := l.rig.VMConfig()
	base := cfg.VMs[len(cfg.VMs)-1]
	for i := 2; i <= n; i++ {
		vm := base
		vm.VMID = vmid + i - 1
		vm.Name = fmt.Sprintf("%s-%d", base.Name, i)
		vm.NetworkConfig.IP = l.rig.GuestIP(i) + "/" + strconv.Itoa(l.rig.PrefixLen())
		cfg.VMs = append(cfg.VMs, vm)
	}
	if err := cfg.Write(l.config); err != nil {
		return err
	}
	var ids []int
	for i := l.vms + 1; i <= n; i++ {
		ids = append(ids, vmid+i-1)
	}
	for i, want := range []string{"create", "converge"} {
		r, err := l.phoenix(ctx, noopArgs(ids)...)
		if err != nil {
			return fmt.Errorf("%s %d VMs: %w", want, len(ids), err)
		}
		if r.code != 0 || r.Failed != 0 || (i == 1 && r.Changed != 0) {
			return fmt.Errorf("%s %d VMs: exit %d, changed %d, failed %d:\n%s", want, len(ids), r.code, r.Changed, r.Failed, r.out)
		}
	}
	l.vms = n
	return nil
}

func (l *lab) close() {
	if l.rig != nil {
		if err := l.rig.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: remove rig %s: %v\n", l.rig.ID, err)
		}
	}
	if l.binDir != "" {
		os.RemoveAll(l.binDir)
	}
}

func createArgs(extra ...string) []string {
	return append([]string{"run", "playbooks/create.yml", "--vmid", strconv.Itoa(vmid)}, extra...)
}

// noopArgs runs create.yml on ids with one fork per VM.
func noopArgs(ids []int) []string {
	args := []string{"run", "playbooks/create.yml", "--forks", strconv.Itoa(len(ids))}
	for _, id := range ids {
		args = append(args, "--vmid", strconv.Itoa(id))
	}
	return args
}

// firstVMs is 8101… n of them.
func firstVMs(n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = vmid + i
	}
	return ids
}

// buildPhoenix builds cmd/phoenix into dir.
func buildPhoenix(ctx context.Context, dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "phoenix")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/phoenix")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/phoenix: %w\n%s", err, out)
	}
	return bin, nil
}

// summary is the last event of `phoenix --output json`.
type summary struct {
	Event   string `json:"event"`
	Changed int    `json:"changed"`
	Failed  int    `json:"failed"`
}

// run is one finished phoenix process.
type run struct {
	summary
	code   int
	out    string        // stdout and stderr, for errors
	cpu    time.Duration // user + system
	maxRSS int64         // bytes
}

// phoenix runs the binary against the lab with --output json.
func (l *lab) phoenix(ctx context.Context, args ...string) (run, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	full := append([]string{"--config", l.config, "--inventory", l.inventory, "--output", "json"}, args...)
	cmd := exec.CommandContext(ctx, l.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return run{}, fmt.Errorf("phoenix %s: %w", strings.Join(args, " "), err)
	}
	r := run{code: cmd.ProcessState.ExitCode(), out: stdout.String() + stderr.String(),
		cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024 // Linux reports KiB
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r.summary); err != nil || r.Event != "summary" {
		return r, fmt.Errorf("phoenix %s: exit %d, last line is not a summary:\n%s", strings.Join(args, " "), r.code, r.out)
	}
	return r, nil
}

// counts are what one phoenix run cost on the rig, summed over its VMs.
type counts struct {
	VMs         int // VMs of the run
	NodeSSH     int // connections accepted by the node's sshd
	GuestSSH    int // connections accepted by the guests' sshd
	Calls       int // qm and pvesh processes on the node
	ConfigReads int // reads of VM 8101's config (qm config, pvesh …/config)
	AgentConns  int // connections to the guests' agents (each starts with guest-sync-delimited)
	GuestExecs  int // processes the guests' agents started (guest-exec)
}

func (c *counts) add(o counts) {
	c.VMs += o.VMs
	c.NodeSSH += o.NodeSSH
	c.GuestSSH += o.GuestSSH
	c.Calls += o.Calls
	c.ConfigReads += o.ConfigReads
	c.AgentConns += o.AgentConns
	c.GuestExecs += o.GuestExecs
}

// report puts the per-op averages of total into the benchmark's result.
func (c counts) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(float64(c.NodeSSH)/n, "ssh-conns/op")
	b.ReportMetric(float64(c.GuestSSH)/n, "guest-ssh-conns/op")
	b.ReportMetric(float64(c.Calls)/n, "qm-calls/op")
	b.ReportMetric(float64(c.ConfigReads)/n, "qm-config-reads/op")
	b.ReportMetric(float64(c.AgentConns)/n, "agent-conns/op")
	b.ReportMetric(float64(c.GuestExecs)/n, "guest-execs/op")
}

// promise checks one run's counts against what phoenix promises for a no-op
// run: one SSH connection to the node, no qm or pvesh process (the VMs'
// state comes from the node's files, the guests are reached through their
// agent sockets), one batched exec in each guest.
func (c counts) promise() error {
	var errs []error
	if c.NodeSSH != 1 {
		errs = append(errs, fmt.Errorf("%d SSH connections to the node, want 1", c.NodeSSH))
	}
	if c.Calls > 0 {
		errs = append(errs, fmt.Errorf("%d qm/pvesh processes on the node, want none", c.Calls))
	}
	if c.GuestExecs > c.VMs {
		errs = append(errs, fmt.Errorf("%d guest agent execs for %d VMs, want one batched round trip each", c.GuestExecs, c.VMs))
	}
	return errors.Join(errs...)
}

// parseCalls counts pvesim's calls log (one "prog arg…" line per call).
func parseCalls(log string) counts {
	var c counts
	id := strconv.Itoa(vmid)
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (f[0] != "qm" && f[0] != "pvesh") {
			continue
		}
		c.Calls++
		switch {
		case f[0] == "qm" && len(f) >= 3 && f[1] == "config" && f[2] == id:
			c.ConfigReads++
		case f[0] == "pvesh" && len(f) >= 3 && strings.HasSuffix(f[2], "/qemu/"+id+"/config"):
			c.ConfigReads++
		}
	}
	return c
}

// agentLog is where the guests' qemu-ga logs (with -v: every request it
// reads, and a line for every exec'd process that ended).
const agentLog = "/var/log/qemu-ga.log"

// guestLogs is what the guests' logs counted.
type guestLogs struct{ ssh, agentConns, execs int }

// guestCounts counts, in the guests of ids, accepted SSH connections, agent
// connections (the guest-sync-delimited each client of the agent starts
// with) and exec'd processes.
func (l *lab) guestCounts(ctx context.Context, ids []int) (guestLogs, error) {
	var g guestLogs
	for _, id := range ids {
		res, err := l.rig.GuestExec(ctx, id, "sh", "-c",
			"grep -c 'Accepted publickey' /var/log/phoenix-guest-init.log; "+
				"grep -c 'guest-sync-delimited' "+agentLog+"; grep -c 'guest_exec_child_watch called' "+agentLog+"; true")
		if err != nil {
			return g, fmt.Errorf("guest %d logs: %w", id, err)
		}
		f := strings.Fields(res.Stdout)
		if len(f) != 3 {
			return g, fmt.Errorf("guest %d logs: %q %q", id, res.Stdout, res.Stderr)
		}
		var n [3]int
		for i := range n {
			if n[i], err = strconv.Atoi(f[i]); err != nil {
				return g, fmt.Errorf("guest %d logs: %q", id, res.Stdout)
			}
		}
		g.ssh, g.agentConns, g.execs = g.ssh+n[0], g.agentConns+n[1], g.execs+n[2]
	}
	return g, nil
}

// mark is where the logs stood before a run.
type mark struct {
	ids     []int
	nodeSSH int
	guest   guestLogs
}

// mark empties pvesim's calls log and reads the node's and the guests' log
// counts.
func (l *lab) mark(ctx context.Context, ids []int) (mark, error) {
	res, err := l.rig.NodeExec(ctx, "sh", "-c", ": > "+callsLog)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return mark{}, fmt.Errorf("empty %s: %w", callsLog, err)
	}
	m := mark{ids: ids}
	if m.nodeSSH, err = l.nodeAccepted(ctx); err != nil {
		return mark{}, err
	}
	if m.guest, err = l.guestCounts(ctx, ids); err != nil {
		return mark{}, err
	}
	return m, nil
}

// since returns what happened on the rig after m.
func (l *lab) since(ctx context.Context, m mark) (counts, error) {
	res, err := l.rig.NodeExec(ctx, "cat", callsLog)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return counts{}, fmt.Errorf("read %s: %w", callsLog, err)
	}
	c := parseCalls(res.Stdout)
	c.VMs = len(m.ids)
	node, err := l.nodeAccepted(ctx)
	if err != nil {
		return counts{}, err
	}
	g, err := l.guestCounts(ctx, m.ids)
	if err != nil {
		return counts{}, err
	}
	c.NodeSSH = node - m.nodeSSH
	c.GuestSSH, c.AgentConns, c.GuestExecs = g.ssh-m.guest.ssh, g.agentConns-m.guest.agentConns, g.execs-m.guest.execs
	return c, nil
}

// nodeAccepted counts the node sshd's "Accepted publickey" lines: sshd runs
// with -e, so they are in the container's log.
func (l *lab) nodeAccepted(ctx context.Context) (int, error) {
	var out bytes.Buffer
	err := l.docker.Client.Logs(dc.LogsOptions{Context: ctx, Container: l.rig.NodeContainer(),
		OutputStream: &out, ErrorStream: &out, Stdout: true, Stderr: true})
	if err != nil {
		return 0, fmt.Errorf("node log: %w", err)
	}
	return strings.Count(out.String(), "Accepted publickey"), nil
}

// measure runs phoenix b.N times with args on the VMs ids, checks every run
// with ok and the no-op promise, and reports per op the rig counts,
// phoenix's CPU time and its peak memory. Only the phoenix runs are timed.
func (l *lab) measure(b *testing.B, ids []int, ok func(run) error, args ...string) {
	b.Helper()
	ctx := context.Background()
	var total counts
	var cpu time.Duration
	var maxRSS int64
	// Timings mean little on a busy machine: say how busy it was.
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average %s", strings.Join(strings.Fields(string(load))[:3], " "))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		m, err := l.mark(ctx, ids)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		r, err := l.phoenix(ctx, args...)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := ok(r); err != nil {
			b.Fatalf("run %d: %v\n%s", i+1, err, r.out)
		}
		c, err := l.since(ctx, m)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.promise(); err != nil {
			b.Fatalf("run %d breaks the no-op promise: %v (counts %+v)", i+1, err, c)
		}
		total.add(c)
		cpu += r.cpu
		maxRSS = max(maxRSS, r.maxRSS)
		b.StartTimer()
	}
	b.StopTimer()
	total.report(b)
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(maxRSS)/(1<<20), "max-rss-MiB")
}
