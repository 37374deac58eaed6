package qga_test

// The helper against a real qemu-ga listening on a unix socket (as the rig's
// guests run it, and as QEMU's chardev serves a VM's socket), and against a
// scripted agent for what a real one will not do on cue (stay silent, drop
// the connection, leave stale answers in the stream). The node is this
// machine: the helper runs in a real `perl -`, as it does over SSH. The
// "VM" is this test binary started again as /usr/bin/kvm with -pidfile, so
// the helper's running check sees what it sees on Proxmox.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
	"github.com/phoenix-hv/phoenix/transport/qga"
	"github.com/phoenix-hv/phoenix/transport/transporttest"
)

const vmid = 8101

// kvmEnv makes this binary stand for a VM's QEMU process until killed.
const kvmEnv = "PHOENIX_QGA_TEST_KVM"

func TestMain(m *testing.M) {
	if os.Getenv(kvmEnv) != "" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// node counts the node commands it runs (through /bin/sh on this machine).
type node struct{ runs atomic.Int32 }

func (n *node) Run(ctx context.Context, c transport.Cmd) (transport.Result, error) {
	n.runs.Add(1)
	return local.Shell{}.Run(ctx, c)
}

// vm is a running VM's run directory: a pid file naming a process whose
// command line is kvm's with that -pidfile.
type vm struct {
	dir  string
	sock string
	node *node
}

func newVM(t *testing.T) *vm {
	t.Helper()
	// A short path: a socket's must fit a sockaddr_un.
	dir, err := os.MkdirTemp("", "qga")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	v := &vm{dir: dir, sock: filepath.Join(dir, fmt.Sprintf("%d.qga", vmid)), node: &node{}}
	pidfile := filepath.Join(dir, fmt.Sprintf("%d.pid", vmid))
	v.kvm(t, pidfile, pidfile)
	return v
}

// kvm starts a stand-in QEMU started with -pidfile arg and writes its pid to
// pidfile.
func (v *vm) kvm(t *testing.T, pidfile, arg string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: exe, Args: []string{"/usr/bin/kvm", "-id", strconv.Itoa(vmid), "-pidfile", arg, "-daemonize"},
		Env: append(os.Environ(), kvmEnv+"=1")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// qemuGA starts a real qemu-ga on the VM's socket.
func (v *vm) qemuGA(t *testing.T) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("qemu-ga")
	if err != nil {
		t.Fatal("qemu-ga not installed: apt-get install qemu-guest-agent (.ci/run does)")
	}
	ga := exec.Command(bin, "-m", "unix-listen", "-p", v.sock, "-t", t.TempDir(), "-f", filepath.Join(v.dir, "qemu-ga.pid"))
	if err := ga.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ga.Process.Kill(); ga.Wait() })
	c := v.client()
	for i := 0; c.Ping(context.Background()) != nil; i++ {
		if i == 100 {
			t.Fatal("qemu-ga did not answer within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ga
}

func (v *vm) client() *qga.Client {
	return &qga.Client{Node: v.node, VMID: vmid, RunDir: v.dir}
}

func (v *vm) transport() *qga.Transport {
	t := qga.New(v.node, vmid)
	t.RunDir = v.dir
	return t
}

func TestConformance(t *testing.T) {
	v := newVM(t)
	v.qemuGA(t)
	transporttest.Run(t, func(*testing.T) transport.Transport { return v.transport() })
}

func sh(line string, timeout time.Duration) qga.Exec {
	return qga.Exec{Path: "/bin/sh", Args: []string{"-c", line}, Timeout: timeout}
}

// Several commands, stdin and every byte value in one node command.
func TestExecBatch(t *testing.T) {
	v := newVM(t)
	v.qemuGA(t)
	before := v.node.runs.Load()
	in := []byte("ä\x00\xff\n")
	sts, err := v.client().Exec(context.Background(),
		sh(`printf 'ä\000\377'; printf 'ö' >&2`, time.Minute),
		qga.Exec{Path: "/bin/sh", Args: []string{"-c", "cat; exit 3"}, Stdin: in, Timeout: time.Minute},
		sh("sleep 0.3; kill -9 $$", time.Minute),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.node.runs.Load() - before; got != 1 {
		t.Errorf("%d node commands, want 1", got)
	}
	want := []struct {
		out, err string
		code     int
		signal   int
	}{{"ä\x00\xff", "ö", 0, 0}, {string(in), "", 3, 0}, {"", "", 0, 9}}
	for i, w := range want {
		st := sts[i]
		if st.PID <= 0 || string(st.Stdout) != w.out || string(st.Stderr) != w.err {
			t.Errorf("exec %d: pid %d, stdout %q, stderr %q; want %q, %q", i, st.PID, st.Stdout, st.Stderr, w.out, w.err)
		}
		if w.signal > 0 {
			if st.Signal == nil || *st.Signal != w.signal || st.ExitCode != nil {
				t.Errorf("exec %d: exitcode %v signal %v, want signal %d", i, st.ExitCode, st.Signal, w.signal)
			}
		} else if st.ExitCode == nil || *st.ExitCode != w.code {
			t.Errorf("exec %d: exitcode %v, want %d", i, st.ExitCode, w.code)
		}
	}
}

func TestNotRunning(t *testing.T) {
	pidfile := func(v *vm) string { return filepath.Join(v.dir, fmt.Sprintf("%d.pid", vmid)) }
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, v *vm)
		want  string
	}{
		{"no pid file", func(t *testing.T, v *vm) { os.Remove(pidfile(v)) }, "VM 8101 not running"},
		{"a stale pid", func(t *testing.T, v *vm) { os.WriteFile(pidfile(v), []byte("999999999\n"), 0o644) }, "VM 8101 not running"},
		{"not a number", func(t *testing.T, v *vm) { os.WriteFile(pidfile(v), []byte("12ab\n"), 0o644) }, "VM 8101 not running"},
		{"the pid of another program", func(t *testing.T, v *vm) {
			os.WriteFile(pidfile(v), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
		}, "VM 8101 not running"},
		{"a kvm with another pid file", func(t *testing.T, v *vm) { v.kvm(t, pidfile(v), "/var/run/qemu-server/8101.pid") }, "VM 8101 not running"},
		{"running, no agent socket", func(*testing.T, *vm) {}, "QEMU guest agent is not running (unable to connect to VM 8101 qga socket - No such file or directory)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newVM(t)
			tt.setup(t, v)
			err := v.client().Ping(context.Background())
			var down *qga.DownError
			if !errors.As(err, &down) || !errors.Is(err, transport.ErrAgentUnavailable) || err.Error() != tt.want {
				t.Fatalf("Ping = %v, want a DownError %q", err, tt.want)
			}
			_, err = v.client().Exec(context.Background(), sh("true", time.Minute))
			if !errors.As(err, &down) {
				t.Fatalf("Exec = %v, want a DownError", err)
			}
		})
	}
}

// agent is a scripted agent on the VM's socket: it answers the sync and
// then what answer says for each later request line. It keeps every line
// it got.
type agent struct {
	mu    sync.Mutex
	lines []string
}

// answer returns what to write for a request (nil: stay silent) and whether
// to drop the connection after it.
type answer func(req string) (reply []byte, drop bool)

func (v *vm) agent(t *testing.T, syncPrefix string, answer answer) *agent {
	t.Helper()
	l, err := net.Listen("unix", v.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a := &agent{}
	syncRe := regexp.MustCompile(`"guest-sync-delimited","arguments":\{"id":(\d+)\}`)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sc := bufio.NewScanner(c)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				req := sc.Text()
				a.mu.Lock()
				a.lines = append(a.lines, req)
				a.mu.Unlock()
				if m := syncRe.FindStringSubmatch(req); m != nil {
					if answer == nil {
						continue // a silent agent: QEMU holds the socket, nobody answers
					}
					fmt.Fprintf(c, "%s\xff{\"return\": %s}\n", syncPrefix, m[1])
					continue
				}
				reply, drop := answer(req)
				c.Write(reply)
				if drop {
					break
				}
			}
			c.Close()
		}
	}()
	return a
}

func (a *agent) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.lines...)
}

func (a *agent) execs() int {
	n := 0
	for _, l := range a.got() {
		if strings.Contains(l, `"guest-exec"`) {
			n++
		}
	}
	return n
}

// An agent that does not answer the sync: nothing else is sent, so the
// command can go elsewhere.
func TestSilentAgent(t *testing.T) {
	v := newVM(t)
	a := v.agent(t, "", nil)
	c := v.client()
	c.Sync = 300 * time.Millisecond
	_, err := c.Exec(context.Background(), sh("touch /tmp/x", time.Minute))
	var down *qga.DownError
	if !errors.As(err, &down) || !strings.Contains(err.Error(), "QEMU guest agent is not running") {
		t.Fatalf("Exec = %v, want a DownError saying the agent is not running", err)
	}
	if got := a.got(); len(got) != 1 || a.execs() != 0 {
		t.Errorf("the agent got %q, want only the sync", got)
	}
}

// Stale answers of an earlier client come before the sync's echo: they are
// skipped, and so is an echo of another id.
func TestStaleAnswersSkipped(t *testing.T) {
	v := newVM(t)
	stale := `{"return": {"exited": true, "exitcode": 9}}` + "\n\xff{\"return\": 42}\n{\"return\": {}}\n"
	v.agent(t, stale, func(req string) ([]byte, bool) {
		if strings.Contains(req, `"guest-exec"`) {
			return []byte(`{"return": {"pid": 77}}` + "\n"), false
		}
		return []byte(`{"return": {"exited": true, "exitcode": 0, "out-data": "b2sK"}}` + "\n"), false
	})
	sts, err := v.client().Exec(context.Background(), sh("echo ok", time.Minute))
	if err != nil || len(sts) != 1 || sts[0].PID != 77 || string(sts[0].Stdout) != "ok\n" || *sts[0].ExitCode != 0 {
		t.Fatalf("Exec = %+v, %v", sts, err)
	}
}

// A connection that breaks after the exec was accepted: the command ran or
// runs, its end is unknown, and the next one is never sent.
func TestLostAfterStart(t *testing.T) {
	v := newVM(t)
	a := v.agent(t, "", func(req string) ([]byte, bool) {
		if strings.Contains(req, `"guest-exec"`) {
			return []byte(`{"return": {"pid": 4242}}` + "\n"), false
		}
		return nil, true // exec-status: the agent died
	})
	sts, err := v.client().Exec(context.Background(), sh("touch /tmp/a", time.Minute), sh("touch /tmp/b", time.Minute))
	var lost *qga.LostError
	if !errors.As(err, &lost) || lost.PID != 4242 || lost.Timeout || len(sts) != 0 {
		t.Fatalf("Exec = %+v, %v; want a LostError for pid 4242", sts, err)
	}
	if n := a.execs(); n != 1 {
		t.Errorf("%d execs reached the agent, want 1", n)
	}
}

// An exec the agent refuses ends the batch: the next one is not sent.
func TestAgentRefuses(t *testing.T) {
	v := newVM(t)
	v.qemuGA(t)
	sts, err := v.client().Exec(context.Background(),
		qga.Exec{Path: "/no/such/program", Timeout: time.Minute}, sh("echo never", time.Minute))
	var ae *qga.AgentError
	if !errors.As(err, &ae) || !strings.Contains(ae.Desc, "/no/such/program") || len(sts) != 0 {
		t.Fatalf("Exec = %+v, %v; want an AgentError naming the program", sts, err)
	}
	if !strings.HasPrefix(err.Error(), "exec 1 of 2: agent error: ") {
		t.Errorf("error %q does not say which exec", err)
	}
}

func TestTimeout(t *testing.T) {
	v := newVM(t)
	v.qemuGA(t)
	start := time.Now()
	_, err := v.client().Exec(context.Background(), sh("sleep 30", 300*time.Millisecond))
	var lost *qga.LostError
	if !errors.As(err, &lost) || !lost.Timeout || lost.PID <= 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec = %v, want a LostError with the pid, timed out", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a 300ms timeout took %s", d)
	}
}

// The agent dies while its command runs: the helper says so within its
// 10 s of silence, with the pid, instead of waiting for the command's
// timeout.
func TestAgentDiesWhileItsCommandRuns(t *testing.T) {
	v := newVM(t)
	ga := v.qemuGA(t)
	c := v.client()
	c.Hold = 200 * time.Millisecond
	time.AfterFunc(time.Second, func() { ga.Process.Kill() })
	start := time.Now()
	_, err := c.Exec(context.Background(), sh("sleep 60", 10*time.Minute))
	var lost *qga.LostError
	if !errors.As(err, &lost) || lost.Timeout || lost.PID <= 0 || !errors.Is(err, transport.ErrAgentUnavailable) {
		t.Fatalf("Exec = %v, want a LostError with the pid, the agent gone", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the lost agent was noticed after %s", d)
	}
}

// A long command lets go of the socket after Hold: another client (qm
// guest, a backup's fs-freeze) gets an answer while it runs.
func TestLongCommandReleasesTheSocket(t *testing.T) {
	v := newVM(t)
	v.qemuGA(t)
	c := v.client()
	c.Hold = 200 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		sts, err := c.Exec(context.Background(), sh("sleep 3; echo slept", time.Minute))
		if err == nil && string(sts[0].Stdout) != "slept\n" {
			err = fmt.Errorf("stdout %q", sts[0].Stdout)
		}
		done <- err
	}()
	time.Sleep(time.Second)
	other := v.client()
	other.Sync = 900 * time.Millisecond
	if err := other.Ping(context.Background()); err != nil {
		t.Errorf("another client while the command runs: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The helper uses only modules of perl-base, the Perl every Debian (and so
// every Proxmox node) has even without the perl package.
func TestHelperNeedsOnlyPerlBase(t *testing.T) {
	src, err := os.ReadFile("helper.pl")
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]bool{"strict": true, "warnings": true, "Socket": true, "POSIX": true, "Fcntl": true}
	uses := regexp.MustCompile(`(?m)^\s*(?:use|require)\s+([\w:]+)`).FindAllSubmatch(src, -1)
	if len(uses) == 0 {
		t.Fatal("no use lines found")
	}
	for _, m := range uses {
		if !base[string(m[1])] {
			t.Errorf("helper.pl uses %s, which perl-base does not have", m[1])
		}
	}
}

// The exec requests the helper sends are the QGA schema's (checked against
// what a real qemu-ga accepted above); this pins their shape.
func TestExecRequestShape(t *testing.T) {
	v := newVM(t)
	var req map[string]any
	v.agent(t, "", func(r string) ([]byte, bool) {
		if strings.Contains(r, `"guest-exec"`) {
			json.Unmarshal([]byte(r), &req)
			return []byte(`{"error": {"class": "GenericError", "desc": "no"}}` + "\n"), false
		}
		return nil, true
	})
	v.client().Exec(context.Background(), qga.Exec{Path: "/bin/sh", Args: []string{"-c", "x"}, Stdin: []byte("hi"), Timeout: time.Minute})
	want := map[string]any{"execute": "guest-exec", "arguments": map[string]any{
		"path": "/bin/sh", "arg": []any{"-c", "x"}, "capture-output": true, "input-data": "aGk="}}
	if g, w := fmt.Sprint(req), fmt.Sprint(want); g != w {
		t.Errorf("request %s, want %s", g, w)
	}
}

// Through the Transport, a command whose end was not seen is a status
// unknown (it must not run again elsewhere) that names its pid and says the
// agent is gone; a refusal before anything was sent is only unavailable.
func TestTransportErrorsForAtMostOnce(t *testing.T) {
	v := newVM(t)
	v.agent(t, "", func(req string) ([]byte, bool) {
		if strings.Contains(req, `"guest-exec"`) {
			return []byte(`{"return": {"pid": 4242}}` + "\n"), false
		}
		return nil, true
	})
	_, err := v.transport().Run(context.Background(), transport.Cmd{Line: "touch /tmp/a"})
	var su *transport.StatusUnknownError
	if !errors.As(err, &su) || su.PID != 4242 || !errors.Is(err, transport.ErrAgentUnavailable) || su.Line != "touch /tmp/a" {
		t.Fatalf("Run = %v, want a status unknown for pid 4242 whose cause is the agent", err)
	}

	os.Remove(filepath.Join(v.dir, fmt.Sprintf("%d.pid", vmid)))
	_, err = v.transport().Run(context.Background(), transport.Cmd{Line: "touch /tmp/a"})
	if !errors.Is(err, transport.ErrAgentUnavailable) || errors.Is(err, transport.ErrStatusUnknown) {
		t.Fatalf("Run on a stopped VM = %v, want unavailable only", err)
	}
}

// noPerl is a node without perl.
type noPerl struct{}

func (noPerl) Run(ctx context.Context, c transport.Cmd) (transport.Result, error) {
	c.Line = "PATH=/nonexistent; " + c.Line
	return local.Shell{}.Run(ctx, c)
}

func TestNoPerlOnTheNode(t *testing.T) {
	c := &qga.Client{Node: noPerl{}, VMID: vmid}
	err := c.Ping(context.Background())
	var he *qga.HelperError
	if !errors.As(err, &he) || he.Code != 127 || errors.Is(err, transport.ErrAgentUnavailable) {
		t.Fatalf("Ping = %v, want a HelperError with exit 127", err)
	}
}
