package pvesimrig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
	"github.com/phoenix-hv/phoenix/transport"
	sshx "github.com/phoenix-hv/phoenix/transport/ssh"
)

// node is an SSH connection to the rig's node, as phoenix makes it.
type node struct {
	t *testing.T
	c *sshx.Client
}

func dialNode(t *testing.T, r *rig.Rig) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sshx.Dial(ctx, sshx.Options{
		Host: r.NodeHost, Port: r.NodePort, User: "root",
		IdentityFiles: []string{r.NodeKey}, KnownHosts: r.KnownHosts, Policy: sshx.Strict,
	})
	if err != nil {
		t.Fatalf("ssh to the node: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &node{t: t, c: c}
}

// run runs argv on the node; a non-zero exit is returned as the error.
func (n *node) run(ctx context.Context, stdin string, argv ...string) (transport.Result, error) {
	cmd := transport.Cmd{Line: transport.Command(argv...), Timeout: 3 * time.Minute}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	return n.c.Run(ctx, cmd)
}

// must runs argv and fails the test unless it exits 0.
func (n *node) must(ctx context.Context, argv ...string) string {
	n.t.Helper()
	res, err := n.run(ctx, "", argv...)
	if err != nil {
		n.t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return string(res.Stdout)
}

// fails runs argv and checks it exits non-zero with want on stderr.
func (n *node) fails(ctx context.Context, want string, argv ...string) {
	n.t.Helper()
	res, err := n.run(ctx, "", argv...)
	if transport.ExitCode(err) <= 0 {
		n.t.Fatalf("%s: err %v, stdout %q: want a non-zero exit with %q", strings.Join(argv, " "), err, res.Stdout, want)
	}
	if !strings.Contains(string(res.Stderr), want) {
		n.t.Fatalf("%s: stderr %q, want %q", strings.Join(argv, " "), res.Stderr, want)
	}
}

// prepare clones the template to vmid and gives it the i-th guest address,
// the cloud-init user and the guest key (through /dev/stdin, as phoenix does).
func prepare(ctx context.Context, t *testing.T, r *rig.Rig, n *node, vmid, i int) {
	t.Helper()
	id := strconv.Itoa(vmid)
	n.must(ctx, "qm", "clone", strconv.Itoa(rig.TemplateVMID), id, "--name", "smoke-"+id)
	ipconfig := fmt.Sprintf("ip=%s/%d,gw=%s", r.GuestIP(i), r.PrefixLen(), r.Gateway())
	res, err := n.run(ctx, r.GuestPubKey+"\n", "qm", "set", id, "--ipconfig0", ipconfig, "--ciuser", rig.GuestUser, "--sshkeys", "/dev/stdin")
	if err != nil {
		t.Fatalf("qm set %s: %v", id, err)
	}
	if !strings.HasPrefix(string(res.Stdout), "update VM "+id+": ") {
		t.Errorf("qm set stdout %q: want \"update VM %s: ...\"", res.Stdout, id)
	}
}

// waitAgent polls `qm guest cmd VMID ping` until it exits 0, bounded by d.
func waitAgent(ctx context.Context, n *node, vmid int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		_, err := n.run(ctx, "", "qm", "guest", "cmd", strconv.Itoa(vmid), "ping")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent of vm %d never answered: last %w", vmid, err)
		case <-tick.C:
		}
	}
}

// guestExec is the status object `qm guest exec` prints.
type guestExec struct {
	Exited   int    `json:"exited"`
	ExitCode *int   `json:"exitcode"`
	OutData  string `json:"out-data"`
	ErrData  string `json:"err-data"`
}

func running(ctx context.Context, t *testing.T, r *rig.Rig, vmid int) bool {
	t.Helper()
	_, run, err := r.GuestRunning(ctx, vmid)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestPvesimLifecycleOverSSH(t *testing.T) {
	r := rig.New(t)
	n := dialNode(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const vmid = 8101

	prepare(ctx, t, r, n, vmid, 1)
	cfg := n.must(ctx, "qm", "config", "8101")
	for _, want := range []string{"ciuser: phoenix\n", "ipconfig0: ip=" + r.GuestIP(1) + "/", "sshkeys: ssh-ed25519%20", "agent: enabled=1\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("qm config 8101 lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "template:") {
		t.Errorf("a clone must not be a template:\n%s", cfg)
	}

	n.must(ctx, "qm", "start", "8101")
	if !running(ctx, t, r, vmid) {
		t.Fatal("qm start exited 0 but the guest container does not run")
	}
	if err := waitAgent(ctx, n, vmid, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	// Wait through docker exec (the oracle) first, then read the real status
	// through the agent: `status --wait` was seen to end with only its dots.
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := r.WaitCloudInit(wctx, vmid); err != nil {
		t.Fatal(err)
	}
	out := n.must(ctx, "qm", "guest", "exec", "8101", "--timeout", "120", "--", "cloud-init", "status", "--long")
	var st guestExec
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("qm guest exec output %q: %v", out, err)
	}
	if st.Exited != 1 || st.ExitCode == nil || *st.ExitCode != 0 || !strings.Contains(st.OutData, "status: done") {
		t.Fatalf("cloud-init status --long through the agent: %+v; want exited, exit 0, status: done", st)
	}
	// The oracle: what cloud-init did, seen through docker exec.
	res, err := r.GuestExec(ctx, vmid, "sh", "-c", "id -un phoenix && cat /home/phoenix/.ssh/authorized_keys && ip -4 -o addr show eth0")
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("guest oracle: %v %v", err, res.Err())
	}
	for _, want := range []string{"phoenix\n", r.GuestPubKey, r.GuestIP(1) + "/"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("guest lacks %q:\n%s", want, res.Stdout)
		}
	}

	n.must(ctx, "qm", "snapshot", "8101", "smoke1", "--description", "rig smoke test")
	snaps := n.must(ctx, "qm", "listsnapshot", "8101")
	if !strings.Contains(snaps, "`-> smoke1 ") || !strings.Contains(snaps, "rig smoke test") || !strings.Contains(snaps, "You are here!") {
		t.Errorf("qm listsnapshot 8101:\n%s", snaps)
	}

	n.must(ctx, "qm", "shutdown", "8101")
	if got := n.must(ctx, "qm", "status", "8101"); got != "status: stopped\n" {
		t.Errorf("qm status after shutdown: %q", got)
	}
	if running(ctx, t, r, vmid) {
		t.Error("guest container still runs after qm shutdown")
	}

	n.must(ctx, "qm", "destroy", "8101")
	n.fails(ctx, "Configuration file 'nodes/pve/qemu-server/8101.conf' does not exist", "qm", "status", "8101")
	if exists, _, err := r.GuestRunning(ctx, vmid); err != nil || exists {
		t.Errorf("guest container after qm destroy: exists %v, %v", exists, err)
	}
}

func TestPvesimFaultsOverSSH(t *testing.T) {
	r := rig.New(t)
	n := dialNode(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	t.Run("stopped VM", func(t *testing.T) {
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8111, 11)
		n.fails(ctx, "VM 8111 is not running", "qm", "guest", "cmd", "8111", "ping")
	})

	t.Run("no agent key", func(t *testing.T) {
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8112, 12)
		n.must(ctx, "qm", "set", "8112", "--delete", "agent")
		n.must(ctx, "qm", "start", "8112")
		n.fails(ctx, "No QEMU guest agent configured", "qm", "guest", "cmd", "8112", "ping")
	})

	t.Run("agent: 0", func(t *testing.T) {
		// qm.md 5.1: agent: 0 passes the "configured" check and then fails the
		// ping, as the VM has no agent channel.
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8113, 13)
		n.must(ctx, "qm", "set", "8113", "--agent", "0")
		n.must(ctx, "qm", "start", "8113")
		waitBooted(ctx, t, r, 8113)
		n.fails(ctx, "QEMU guest agent is not running", "qm", "guest", "cmd", "8113", "ping")
	})

	t.Run("agent-off", func(t *testing.T) {
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8114, 14)
		if err := r.SetFault(ctx, 8114, "agent-off", "1"); err != nil {
			t.Fatal(err)
		}
		n.must(ctx, "qm", "start", "8114")
		waitBooted(ctx, t, r, 8114)
		n.fails(ctx, "QEMU guest agent is not running", "qm", "guest", "cmd", "8114", "ping")
		if res, _ := r.GuestExec(ctx, 8114, "pgrep", "-x", "qemu-ga"); res.ExitCode == 0 {
			t.Errorf("qemu-ga runs in the guest despite agent-off: pid %s", res.Stdout)
		}
	})

	t.Run("agent-kill-after", func(t *testing.T) {
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8118, 18)
		if err := r.SetFault(ctx, 8118, "agent-kill-after", "15"); err != nil {
			t.Fatal(err)
		}
		n.must(ctx, "qm", "start", "8118")
		if err := waitAgent(ctx, n, 8118, 2*time.Minute); err != nil {
			t.Fatalf("the agent must answer before it is killed: %v", err)
		}
		// Then it dies, and qm says so as for an agent that never ran.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		for {
			res, err := n.run(wctx, "", "qm", "guest", "cmd", "8118", "ping")
			if err != nil && strings.Contains(string(res.Stderr), "QEMU guest agent is not running") {
				break
			}
			if wctx.Err() != nil {
				t.Fatalf("the agent still answers (or fails otherwise) 2 minutes after agent-kill-after 15: %v, stderr %q", err, res.Stderr)
			}
			time.Sleep(time.Second)
		}
	})

	t.Run("held lock", func(t *testing.T) {
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8115, 15)
		res, err := r.NodeExec(ctx, "sh", "-c", "flock /var/lock/qemu-server/lock-8115.conf sleep 40 >/dev/null 2>&1 &")
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("hold the lock: %v %v", err, res.Err())
		}
		n.fails(ctx, "can't lock file '/var/lock/qemu-server/lock-8115.conf' - got timeout", "qm", "set", "8115", "--cores", "2")
	})

	t.Run("boot-hang", func(t *testing.T) {
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8116, 16)
		if err := r.SetFault(ctx, 8116, "boot-hang", "1"); err != nil {
			t.Fatal(err)
		}
		n.must(ctx, "qm", "start", "8116")
		if !running(ctx, t, r, 8116) {
			t.Fatal("qm start exited 0 but the hung guest's container does not run")
		}
		// A normal guest answers within seconds (see the lifecycle test).
		if err := waitAgent(ctx, n, 8116, 20*time.Second); err == nil {
			t.Fatal("the agent of a hung boot answered")
		}
		n.fails(ctx, "QEMU guest agent is not running", "qm", "guest", "cmd", "8116", "ping")
	})

	t.Run("latency", func(t *testing.T) {
		// A lower bound only: the switch must slow qm down; how fast qm is
		// otherwise is never asserted.
		n := &node{t: t, c: n.c}
		if err := r.SetLatency(ctx, 1500); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		n.must(ctx, "qm", "list")
		if d := time.Since(start); d < 1500*time.Millisecond {
			t.Errorf("qm list with latency_ms 1500 took %v", d)
		}
		if err := r.SetLatency(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if res, _ := r.NodeExec(ctx, "test", "-e", "/etc/pvesim/latency_ms"); res.ExitCode == 0 {
			t.Error("SetLatency(0) left /etc/pvesim/latency_ms")
		}
	})

	t.Run("ssh-off", func(t *testing.T) {
		n := &node{t: t, c: n.c}
		prepare(ctx, t, r, n, 8117, 17)
		if err := r.SetFault(ctx, 8117, "ssh-off", "1"); err != nil {
			t.Fatal(err)
		}
		n.must(ctx, "qm", "start", "8117")
		if err := waitAgent(ctx, n, 8117, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		waitBooted(ctx, t, r, 8117)
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(r.GuestIP(17), "22"), 5*time.Second)
		if err == nil {
			conn.Close()
			t.Fatal("guest port 22 accepts connections despite ssh-off")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("guest port 22: %v, want connection refused", err)
		}
	})
}

// waitBooted waits until the guest's init finished (read through docker exec).
func waitBooted(ctx context.Context, t *testing.T, r *rig.Rig, vmid int) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := r.WaitCloudInit(wctx, vmid)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "status: done") {
		t.Fatalf("vm %d: cloud-init: %q", vmid, out)
	}
}
