package agent_test

// The agent transport against pvesim (the rig's simulated node) and a real
// qemu-ga: the test binary plays qm and pvesh by running pvesim's own code,
// with a backend that says the VM runs, and pvesim talks the QGA protocol
// to a qemu-ga listening on the VM's agent socket. The "guest" is this
// machine. This checks that what the agent transport sends and parses
// matches pvesim, and pvesim matches qemu-ga, before the Docker rig runs.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/pvesim"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/agent"
	"github.com/phoenix-hv/phoenix/transport/transporttest"
)

// pvesimMain runs pvesim as tool (qm or pvesh) with a backend where every
// started VM runs.
func pvesimMain(tool string) int {
	s := pvesim.FromEnv(os.Environ())
	s.Backend = running{}
	return s.Run(context.Background(), tool, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

type running struct{}

func (running) Start(context.Context, pvesim.Guest) error { return nil }
func (running) State(context.Context, string) (pvesim.GuestState, error) {
	return pvesim.GuestState{Running: true, PID: os.Getpid(), StartedAt: time.Now()}, nil
}
func (running) Shutdown(context.Context, string, time.Duration) error { return nil }
func (running) Kill(context.Context, string) error                    { return nil }
func (running) Remove(context.Context, string) error                  { return nil }

// newPvesimNode is a node whose qm and pvesh are pvesim, with VM 8101
// running and its agent socket served by a real qemu-ga.
func newPvesimNode(t *testing.T) *simNode {
	t.Helper()
	qga, err := exec.LookPath("qemu-ga")
	if err != nil {
		t.Fatal("qemu-ga not installed: apt-get install qemu-guest-agent (.ci/run does); the pvesim run needs a real agent")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A short root: the socket path must fit a sockaddr_un.
	root, err := os.MkdirTemp("", "pvesim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	n := &simNode{bin: t.TempDir(), state: root}
	for _, tool := range []string{"qm", "pvesh"} {
		script := "#!/bin/sh\n" + simTool + "=pvesim:" + tool + " PVESIM_ROOT=" + transport.Quote(root) + " exec " + transport.Quote(exe) + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(n.bin, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(root, "var/run/qemu-server")
	for path, content := range map[string]string{
		filepath.Join(root, "etc/pve/qemu-server/8101.conf"): "agent: 1\nmemory: 512\nname: web01\n",
		filepath.Join(run, "8101.pid"):                       "1\n",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(run, "8101.qga")
	ga := exec.Command(qga, "-m", "unix-listen", "-p", sock, "-t", t.TempDir(), "-f", filepath.Join(root, "qemu-ga.pid"))
	if err := ga.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ga.Process.Kill(); ga.Wait() })
	a := agent.New(n, "pve", 8101)
	for i := 0; a.Ping(context.Background()) != nil; i++ {
		if i == 100 {
			t.Fatal("qemu-ga did not answer through pvesim within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

func TestPvesimConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transport.Transport { return agent.New(newPvesimNode(t), "pve", 8101) })
}

func TestPvesimLargeFilesAndBytes(t *testing.T) {
	a := agent.New(newPvesimNode(t), "pve", 8101)
	ctx := context.Background()
	res, err := a.Run(ctx, transport.Cmd{Line: `printf 'ä\000\377'; printf 'ö' >&2`})
	if err != nil || string(res.Stdout) != "ä\x00\xff" || string(res.Stderr) != "ö" {
		t.Fatalf("Run = %q / %q, %v", res.Stdout, res.Stderr, err)
	}
	content := []byte(strings.Repeat("0123456789abcdef\xc3\xa4\x00", 150_000)) // ~2.7 MiB: chunked Put
	path := filepath.Join(t.TempDir(), "big")
	if err := a.Put(ctx, path, strings.NewReader(string(content)), transport.Attrs{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != string(content) {
		t.Fatalf("guest file: %d bytes, %v", len(got), err)
	}
	var back strings.Builder
	if err := a.Get(ctx, path, &back); err != nil || back.String() != string(content) {
		t.Fatalf("Get: %d bytes, %v", back.Len(), err)
	}
}

// newSocketAgent is the agent through its socket (NewWithSocket) on a
// pvesim node, VM 8101 running as Proxmox sees it: its pid file names a
// kvm started with -pidfile (this test binary again).
func newSocketAgent(t *testing.T) (*agent.Transport, *simNode) {
	t.Helper()
	n := newPvesimNode(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(n.state, "var/run/qemu-server")
	pidfile := filepath.Join(run, "8101.pid")
	kvm := &exec.Cmd{Path: exe, Args: []string{"/usr/bin/kvm", "-id", "8101", "-pidfile", pidfile, "-daemonize"}, Env: append(os.Environ(), simTool+"=kvm")}
	if err := kvm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kvm.Process.Kill(); kvm.Wait() })
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(kvm.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// pvesim logs its calls from here on (test/pvesim/calls.go).
	if err := os.MkdirAll(filepath.Join(n.state, "etc/pvesim"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.state, "etc/pvesim/count_calls"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a := agent.NewWithSocket(n, "pve", 8101)
	a.Socket.RunDir = run
	return a, n
}

// qmCalls is pvesim's call log: the qm and pvesh processes that ran.
func (n *simNode) qmCalls(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(n.state, "var/log/pvesim/calls.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// The agent through its socket passes the suite, and no qm process runs.
func TestSocketConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transport.Transport {
		a, n := newSocketAgent(t)
		t.Cleanup(func() {
			if calls := n.qmCalls(t); calls != "" {
				t.Errorf("qm/pvesh ran through the socket transport:\n%s", calls)
			}
		})
		return a
	})
}

// Where the helper cannot run (no perl on the node), qm guest does the
// work, and the helper is not tried again.
func TestSocketFallsBackToQM(t *testing.T) {
	a, n := newSocketAgent(t)
	a.Node = noPerl{n}
	a.Socket.Node = noPerl{n}
	ctx := context.Background()
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(ctx, transport.Cmd{Line: "cat; echo", Stdin: strings.NewReader("through qm"), Timeout: time.Minute})
	if err != nil || string(res.Stdout) != "through qm\n" {
		t.Fatalf("Run = %q, %v", res.Stdout, err)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := a.Put(ctx, path, strings.NewReader("put through qm"), transport.Attrs{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := a.Get(ctx, path, &b); err != nil || b.String() != "put through qm" {
		t.Fatalf("Get = %q, %v", b.String(), err)
	}
	if calls := n.qmCalls(t); !strings.Contains(calls, "qm guest exec 8101") {
		t.Errorf("no qm guest exec ran:\n%s", calls)
	}
	if tries := a.Socket.Node.(noPerl).tries(); tries != 1 {
		t.Errorf("the helper was tried %d times, want once", tries)
	}
}

// noPerl is a node without perl; it counts the tries.
type noPerl struct{ *simNode }

func (p noPerl) Run(ctx context.Context, c transport.Cmd) (transport.Result, error) {
	if strings.HasPrefix(c.Line, "perl ") {
		p.simNode.perlTries.Add(1)
		return transport.Result{ExitCode: 127, Stderr: []byte("sh: 1: perl: not found\n")},
			&transport.ExitError{Line: c.Line, Code: 127, Stderr: []byte("sh: 1: perl: not found\n")}
	}
	return p.simNode.Run(ctx, c)
}

func (p noPerl) tries() int32 { return p.simNode.perlTries.Load() }
