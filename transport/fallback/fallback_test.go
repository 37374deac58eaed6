package fallback

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/agent"
	"github.com/phoenix-hv/phoenix/transport/fake"
	sshtransport "github.com/phoenix-hv/phoenix/transport/ssh"
)

// agentFake is a strict fake agent with a scripted Ping and Put.
type agentFake struct {
	*fake.Transport
	mu     sync.Mutex
	pings  int
	ping   func(n int) error // answer to the n-th ping (0-based)
	putErr error             // Put reads everything, then fails with it
}

func newAgent(t *testing.T, ping func(n int) error, calls ...fake.Call) *agentFake {
	return &agentFake{Transport: fake.New(t, calls...).Named("agent vm 8101"), ping: ping}
}

func (a *agentFake) Ping(context.Context) error {
	a.mu.Lock()
	n := a.pings
	a.pings++
	a.mu.Unlock()
	return a.ping(n)
}

func (a *agentFake) Put(ctx context.Context, path string, r io.Reader, mode transport.Attrs) error {
	if a.putErr != nil {
		io.Copy(io.Discard, r)
		return a.putErr
	}
	return a.Transport.Put(ctx, path, r, mode)
}

var (
	agentDown     = &agent.UnavailableError{Text: "QEMU guest agent is not running"}
	agentNotThere = &agent.UnavailableError{Text: "No QEMU guest agent configured"}
	refused       = fmt.Errorf("ssh phoenix@10.0.0.5:22: dial: %w: dial tcp 10.0.0.5:22: connect: connection refused", transport.ErrUnreachable)
)

func always(err error) func(int) error { return func(int) error { return err } }

// dialer is a scripted DialSSH: the n-th dial gets answers[n] (the last one
// repeats); nil answers with conn.
type dialer struct {
	mu      sync.Mutex
	dials   int
	answers []error
	conn    transport.Transport
	conns   []transport.Transport // when set, the n-th successful dial gets conns[n]
	ok      int
}

func (d *dialer) dial(context.Context) (transport.Transport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.answers[min(d.dials, len(d.answers)-1)]
	d.dials++
	if err != nil {
		return nil, err
	}
	if d.conns != nil {
		c := d.conns[min(d.ok, len(d.conns)-1)]
		d.ok++
		return c, nil
	}
	return d.conn, nil
}

func (d *dialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

// logs collects Log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) log(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func sshFake(t *testing.T, calls ...fake.Call) *fake.Transport {
	return fake.New(t, calls...).Named("ssh phoenix@10.0.0.5:22")
}

func opts(a transport.Transport, d *dialer, l *logs) Options {
	o := Options{VMID: 8101, Agent: a, Timeout: 5 * time.Second, ProbeInterval: 5 * time.Millisecond, Log: l.log}
	if d != nil {
		o.DialSSH = d.dial
	}
	return o
}

func TestAgentAnswersAgentIsUsed(t *testing.T) {
	a := newAgent(t, always(nil), fake.Call{Line: "hostname", Result: fake.Out("web01\n")})
	d := &dialer{answers: []error{nil}, conn: sshFake(t)}
	l := &logs{}
	g := New(opts(a, d, l))
	if g.Channel() != "" {
		t.Fatalf("channel before any contact: %q", g.Channel())
	}
	res, err := g.Run(context.Background(), transport.Cmd{Line: "hostname"})
	if err != nil || string(res.Stdout) != "web01\n" {
		t.Fatalf("Run = %q, %v", res.Stdout, err)
	}
	if g.Channel() != "agent" || g.Name() != "agent vm 8101" {
		t.Fatalf("channel %q, name %q", g.Channel(), g.Name())
	}
	if !l.contains("vm 8101: the guest agent answers; steps run through agent vm 8101") {
		t.Fatalf("log %q", l.lines)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// An agent that answers within its head start means no SSH connection is
// opened only to be dropped (a no-op run costs one connection: the node's).
func TestAgentInTimeOpensNoSSH(t *testing.T) {
	d := &dialer{answers: []error{nil}, conn: sshFake(t)}
	o := opts(newAgent(t, always(nil)), d, &logs{})
	o.ProbeInterval = time.Minute
	if err := New(o).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := d.count(); n != 0 {
		t.Fatalf("SSH dialed %d times while the agent answered at once", n)
	}
}

func TestAgentDownSSHUp(t *testing.T) {
	conn := sshFake(t, fake.Call{Line: "hostname", Result: fake.Out("web01\n")})
	a := newAgent(t, always(agentDown))
	l := &logs{}
	g := New(opts(a, &dialer{answers: []error{nil}, conn: conn}, l))
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.Channel() != "ssh" || g.Name() != "ssh phoenix@10.0.0.5:22" {
		t.Fatalf("channel %q, name %q", g.Channel(), g.Name())
	}
	if !l.contains("vm 8101: agent: QEMU guest agent is not running; steps run over ssh phoenix@10.0.0.5:22") {
		t.Fatalf("log %q", l.lines)
	}
	if res, err := g.Run(context.Background(), transport.Cmd{Line: "hostname"}); err != nil || string(res.Stdout) != "web01\n" {
		t.Fatalf("Run = %q, %v", res.Stdout, err)
	}
}

func TestAgentDiesMidRun(t *testing.T) {
	a := newAgent(t, always(nil),
		fake.Call{Line: "step 1", Result: fake.Out("one\n")},
		fake.Call{Line: "step 2", Stdin: "input", Err: agentDown},
	)
	conn := sshFake(t,
		fake.Call{Line: "step 2", Stdin: "input", Result: fake.Out("two\n")},
		fake.Call{Line: "step 3", Result: fake.Out("three\n")},
	)
	d := &dialer{answers: []error{transport.ErrAuth, nil}, conn: conn}
	l := &logs{}
	g := New(opts(a, d, l))
	ctx := context.Background()
	if res, err := g.Run(ctx, transport.Cmd{Line: "step 1"}); err != nil || string(res.Stdout) != "one\n" {
		t.Fatalf("step 1 = %q, %v", res.Stdout, err)
	}
	// Stdin that cannot be rewound: it must reach SSH whole.
	res, err := g.Run(ctx, transport.Cmd{Line: "step 2", Stdin: io.MultiReader(strings.NewReader("in"), strings.NewReader("put"))})
	if err != nil || string(res.Stdout) != "two\n" {
		t.Fatalf("step 2 = %q, %v", res.Stdout, err)
	}
	if g.Channel() != "ssh" {
		t.Fatalf("channel %q after the agent died", g.Channel())
	}
	if !l.contains("agent stopped answering (QEMU guest agent is not running); continuing over SSH") {
		t.Fatalf("log %q", l.lines)
	}
	if res, err := g.Run(ctx, transport.Cmd{Line: "step 3"}); err != nil || string(res.Stdout) != "three\n" {
		t.Fatalf("step 3 = %q, %v", res.Stdout, err)
	}
}

// statusUnknown is what the agent transport returns when the agent dies
// after it started a command.
func statusUnknown(line string) error {
	return &transport.StatusUnknownError{Line: line, Channel: "agent vm 8101", PID: 4242,
		Cause: &agent.UnavailableError{Text: "VM 8101 qmp command 'guest-exec-status' failed - got timeout"}}
}

// Finding 5 of issue 8: a command the agent started is never run a second
// time over SSH; the step fails with "status unknown", and the next command
// goes over SSH.
func TestAgentDiesAfterTheCommandStarted(t *testing.T) {
	a := newAgent(t, always(nil), fake.Call{Line: "apt-get install -y nfs-common", Stdin: "in", Err: statusUnknown("apt-get install -y nfs-common")})
	conn := sshFake(t, fake.Call{Line: "step 2", Result: fake.Out("two\n")}) // no second apt-get
	l := &logs{}
	g := New(opts(a, &dialer{answers: []error{nil}, conn: conn}, l))
	ctx := context.Background()
	_, err := g.Run(ctx, transport.Cmd{Line: "apt-get install -y nfs-common", Stdin: strings.NewReader("in")})
	if !errors.Is(err, transport.ErrStatusUnknown) || !strings.Contains(err.Error(), "check the guest (ps -p 4242") {
		t.Fatalf("err = %v, want the status unknown", err)
	}
	if !l.contains("agent stopped answering after a command started; the command is not run again, later steps go over SSH") {
		t.Fatalf("log %q", l.lines)
	}
	if res, err := g.Run(ctx, transport.Cmd{Line: "step 2"}); err != nil || string(res.Stdout) != "two\n" {
		t.Fatalf("step 2 = %q, %v", res.Stdout, err)
	}
	if g.Channel() != "ssh" {
		t.Fatalf("channel %q after the agent died", g.Channel())
	}
}

// A status unknown that is not the agent's fault (the node connection
// broke) keeps the agent as the channel, and runs nothing over SSH either.
func TestStatusUnknownWithALiveAgent(t *testing.T) {
	lost := &transport.StatusUnknownError{Line: "x", Channel: "agent vm 8101", PID: 9, Cause: transport.ErrDisconnected}
	a := newAgent(t, always(nil), fake.Call{Line: "x", Err: lost}, fake.Call{Line: "y"})
	g := New(opts(a, &dialer{answers: []error{nil}, conn: sshFake(t)}, &logs{}))
	if _, err := g.Run(context.Background(), transport.Cmd{Line: "x"}); !errors.Is(err, transport.ErrStatusUnknown) {
		t.Fatalf("err = %v", err)
	}
	if _, err := g.Run(context.Background(), transport.Cmd{Line: "y"}); err != nil || g.Channel() != "agent" {
		t.Fatalf("err %v, channel %q", err, g.Channel())
	}
}

// An upload is idempotent: one the agent may have half done is done again,
// whole, over SSH.
func TestPutRedoneOverSSHAfterStatusUnknown(t *testing.T) {
	a := newAgent(t, always(nil))
	a.putErr = fmt.Errorf("put /etc/app.conf: chunk 2: %w", statusUnknown("cat >> f"))
	conn := sshFake(t)
	g := New(opts(a, &dialer{answers: []error{nil}, conn: conn}, &logs{}))
	if err := g.Put(context.Background(), "/etc/app.conf", strings.NewReader("key=1\n"), transport.Attrs{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if got := string(conn.Files["/etc/app.conf"]); got != "key=1\n" {
		t.Fatalf("ssh got %q", got)
	}
}

// A broken SSH connection (the guest rebooted, sshd was killed) fails the
// command that was on it, and the next command connects again.
func TestSSHConnectionDroppedIsDialedAgain(t *testing.T) {
	first := sshFake(t, fake.Call{Line: "step 1", Err: fmt.Errorf("run \"step 1\": %w: EOF", transport.ErrDisconnected)})
	second := sshFake(t, fake.Call{Line: "step 2", Result: fake.Out("two\n")})
	d := &dialer{answers: []error{nil}, conns: []transport.Transport{first, second}}
	l := &logs{}
	g := New(opts(newAgent(t, always(agentDown)), d, l))
	ctx := context.Background()
	if _, err := g.Run(ctx, transport.Cmd{Line: "step 1"}); !errors.Is(err, transport.ErrDisconnected) {
		t.Fatalf("step 1: %v", err)
	}
	if res, err := g.Run(ctx, transport.Cmd{Line: "step 2"}); err != nil || string(res.Stdout) != "two\n" {
		t.Fatalf("step 2 = %q, %v", res.Stdout, err)
	}
	if d.count() != 2 || !l.contains("the SSH connection broke; the next step connects again") {
		t.Fatalf("dialed %d times, log %q", d.count(), l.lines)
	}
}

func TestAgentDiesDuringPut(t *testing.T) {
	a := newAgent(t, always(nil))
	a.putErr = fmt.Errorf("put /etc/app.conf: %w", agentDown)
	conn := sshFake(t)
	g := New(opts(a, &dialer{answers: []error{nil}, conn: conn}, &logs{}))
	if err := g.Wait(context.Background()); err != nil || g.Channel() != "agent" {
		t.Fatalf("wait: %v, channel %q", err, g.Channel())
	}
	r := io.MultiReader(strings.NewReader("key=1\n"), strings.NewReader("other=2\n"))
	if err := g.Put(context.Background(), "/etc/app.conf", r, transport.Attrs{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if got := string(conn.Files["/etc/app.conf"]); got != "key=1\nother=2\n" || conn.Attrs["/etc/app.conf"].Mode != 0o600 {
		t.Fatalf("ssh got %q mode %o", got, conn.Attrs["/etc/app.conf"].Mode)
	}
}

func TestAgentFailureThatIsNotUnavailabilityIsNotRetried(t *testing.T) {
	a := newAgent(t, always(nil), fake.Call{Line: "false", Result: fake.Fail(1, "")})
	g := New(opts(a, &dialer{answers: []error{refused}}, &logs{}))
	_, err := g.Run(context.Background(), transport.Cmd{Line: "false"})
	if transport.ExitCode(err) != 1 || g.Channel() != "agent" {
		t.Fatalf("err = %v, channel %q", err, g.Channel())
	}
}

func TestBothDown(t *testing.T) {
	d := &dialer{answers: []error{refused}}
	g := New(Options{VMID: 8101, Agent: newAgent(t, always(agentDown)), DialSSH: d.dial,
		Timeout: 200 * time.Millisecond, ProbeInterval: 5 * time.Millisecond})
	err := g.Wait(context.Background())
	want := "guest unreachable after 200ms: agent: QEMU guest agent is not running; " +
		"ssh phoenix@10.0.0.5:22: dial: unreachable: dial tcp 10.0.0.5:22: connect: connection refused"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	for _, target := range []error{transport.ErrUnreachable, transport.ErrAgentUnavailable} {
		if !errors.Is(err, target) {
			t.Errorf("err does not wrap %v", target)
		}
	}
	if d.count() < 2 {
		t.Errorf("SSH dialed %d times; a refusal must be retried", d.count())
	}
	if _, err := g.Run(context.Background(), transport.Cmd{Line: "true"}); err == nil {
		t.Fatal("Run after a failed wait must fail")
	}
}

// The guest_wait step bounds its context with the same agent timeout: when
// both deadlines pass together the error must still say what was tried.
func TestBothDownUnderTheCallersDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	g := New(Options{VMID: 8101, Agent: newAgent(t, always(agentDown)), DialSSH: (&dialer{answers: []error{refused}}).dial,
		Timeout: 200 * time.Millisecond, ProbeInterval: 5 * time.Millisecond})
	err := g.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "agent: QEMU guest agent is not running; ssh phoenix@10.0.0.5:22") {
		t.Fatalf("err = %v, want what each channel said", err)
	}
	if !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("err does not wrap ErrUnreachable: %v", err)
	}
}

// A caller's deadline shorter than the guest's timeout: the error says how
// long it really waited, and that the caller's deadline ended it.
func TestCallersShorterDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	g := New(Options{VMID: 8101, Agent: newAgent(t, always(agentDown)), DialSSH: (&dialer{answers: []error{refused}}).dial,
		Timeout: time.Hour, ProbeInterval: 5 * time.Millisecond})
	err := g.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || err == nil || strings.Contains(err.Error(), "after 3600s") ||
		!strings.Contains(err.Error(), "agent: QEMU guest agent is not running; ssh phoenix@10.0.0.5:22") {
		t.Fatalf("err = %v", err)
	}
}

func TestAgentDiesAndSSHIsDownToo(t *testing.T) {
	a := newAgent(t, always(nil), fake.Call{Line: "x", Err: agentDown})
	g := New(Options{VMID: 8101, Agent: a, DialSSH: (&dialer{answers: []error{refused}}).dial,
		Timeout: 100 * time.Millisecond, ProbeInterval: 5 * time.Millisecond})
	_, err := g.Run(context.Background(), transport.Cmd{Line: "x"})
	if err == nil || !strings.Contains(err.Error(), "guest unreachable after 100ms: agent: QEMU guest agent is not running; ssh phoenix@10.0.0.5:22: dial: unreachable") {
		t.Fatalf("err = %v", err)
	}
}

func TestGivesUpEarlyWhenNoChannelCanAnswer(t *testing.T) {
	changed := fmt.Errorf("ssh phoenix@10.0.0.5:22: %w: REMOTE HOST IDENTIFICATION HAS CHANGED", transport.ErrHostKeyChanged)
	unknown := fmt.Errorf("ssh phoenix@10.0.0.5:22: %w: phoenix-vm-8101 offered ssh-ed25519 SHA256:x", transport.ErrHostKeyUnknown)
	for _, tc := range []struct {
		name  string
		agent transport.Transport
		d     *dialer
		want  string
		is    error
	}{
		{name: "no agent, no ssh", want: "guest unreachable: agent: not configured; ssh: not configured"},
		{name: "agent not configured, no ssh", agent: newAgent(t, always(agentNotThere)),
			want: "guest unreachable: agent: No QEMU guest agent configured; ssh: not configured"},
		{name: "agent not configured, host key changed", agent: newAgent(t, always(agentNotThere)), d: &dialer{answers: []error{changed}},
			want: "agent: No QEMU guest agent configured; ssh phoenix@10.0.0.5:22: host key changed: REMOTE HOST IDENTIFICATION HAS CHANGED", is: transport.ErrHostKeyChanged},
		{name: "agent not configured, host key unknown", agent: newAgent(t, always(agentNotThere)), d: &dialer{answers: []error{unknown}},
			want: "ssh phoenix@10.0.0.5:22: host key unknown: phoenix-vm-8101 offered", is: transport.ErrHostKeyUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts(tc.agent, tc.d, &logs{})
			o.Timeout = time.Hour // must not be waited for
			err := New(o).Wait(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err does not wrap %v", tc.is)
			}
			if tc.d != nil && tc.d.count() != 1 {
				t.Errorf("dialed %d times; a host key problem is never retried", tc.d.count())
			}
		})
	}
}

func TestAuthRefusalsAreRetried(t *testing.T) {
	conn := sshFake(t)
	d := &dialer{answers: []error{transport.ErrAuth, transport.ErrAuth, nil}, conn: conn}
	g := New(opts(nil, d, &logs{}))
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.Channel() != "ssh" || d.count() != 3 {
		t.Fatalf("channel %q after %d dials", g.Channel(), d.count())
	}
}

func TestHostKeyChangedIsLoudEvenWhenTheAgentAnswers(t *testing.T) {
	changed := fmt.Errorf("ssh phoenix@10.0.0.5:22: %w: REMOTE HOST IDENTIFICATION HAS CHANGED", transport.ErrHostKeyChanged)
	d := &dialer{answers: []error{changed}}
	l := &logs{}
	// The agent answers only once the refusal has been reported.
	a := newAgent(t, func(int) error {
		if !l.contains("host key changed") {
			return agentDown
		}
		return nil
	})
	g := New(opts(a, d, l))
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.Channel() != "agent" || !l.contains("vm 8101: ssh phoenix@10.0.0.5:22: host key changed: REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Fatalf("channel %q, log %q", g.Channel(), l.lines)
	}
	if d.count() != 1 {
		t.Fatalf("dialed %d times", d.count())
	}
}

func TestParentContextEndsTheWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := newAgent(t, func(int) error { cancel(); return agentDown })
	g := New(opts(a, &dialer{answers: []error{refused}}, &logs{}))
	if err := g.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestSudoForNonRootUser(t *testing.T) {
	const content = "a=1\n\x00\xff"
	sum := sha256.Sum256([]byte(content))
	hash := hex.EncodeToString(sum[:])
	up, _ := transport.NewUpload("/etc/my app/x.conf", zeros{})
	conn := sshFake(t,
		fake.Call{Line: `sudo -n sh -c 'cat /etc/shadow | wc -l'`, Result: fake.Out("20\n")},
		fake.Call{Line: "sudo -n sh -c " + transport.Quote(up.Begin()), Stdin: content, Result: fake.Out("2049:77\n")},
		fake.Call{Line: "sudo -n sh -c " + transport.Quote(up.Commit("2049:77", hash, transport.Attrs{Mode: 0o640}))},
		fake.Call{Line: "sudo -n cat /etc/hostname", Result: fake.Out("web01\n")},
		fake.Call{Line: "sudo -n cat /nope", Result: fake.Fail(1, "cat: /nope: No such file or directory\n")},
	)
	o := opts(nil, &dialer{answers: []error{nil}, conn: conn}, &logs{})
	o.SSHUser = "phoenix"
	o.Rand = zeros{}
	g := New(o)
	ctx := context.Background()
	if res, err := g.Run(ctx, transport.Cmd{Line: "cat /etc/shadow | wc -l"}); err != nil || string(res.Stdout) != "20\n" {
		t.Fatalf("Run = %q, %v", res.Stdout, err)
	}
	if err := g.Put(ctx, "/etc/my app/x.conf", strings.NewReader(content), transport.Attrs{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := g.Get(ctx, "/etc/hostname", &out); err != nil || out.String() != "web01\n" {
		t.Fatalf("Get = %q, %v", out.String(), err)
	}
	if err := g.Get(ctx, "/nope", &out); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get of a missing file: %v", err)
	}
	if len(conn.Files) != 0 {
		t.Fatalf("a non-root Put must not use SFTP: %v", conn.Files)
	}
}

func TestRootUsesSSHPlainly(t *testing.T) {
	conn := sshFake(t, fake.Call{Line: "id -u", Result: fake.Out("0\n")})
	o := opts(nil, &dialer{answers: []error{nil}, conn: conn}, &logs{})
	o.SSHUser = "root"
	g := New(o)
	if _, err := g.Run(context.Background(), transport.Cmd{Line: "id -u"}); err != nil {
		t.Fatal(err)
	}
	if err := g.Put(context.Background(), "/etc/x", strings.NewReader("x"), transport.Attrs{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if string(conn.Files["/etc/x"]) != "x" {
		t.Fatalf("root Put did not go through the transport's own Put")
	}
}

func hostKey(t *testing.T, seed byte) (ssh.PublicKey, string) {
	t.Helper()
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, string(ssh.MarshalAuthorizedKey(k))
}

func TestPinsHostKeyReadThroughTheAgent(t *testing.T) {
	key, line := hostKey(t, 7)
	file := filepath.Join(t.TempDir(), "known_hosts")
	a := newAgent(t, always(nil), fake.Call{Line: pinScript, Result: fake.Out(line + " root@web01\n")})
	l := &logs{}
	o := opts(a, nil, l)
	o.KnownHosts = file
	o.PinHostKey = sshtransport.PinHostKey
	g := New(o)
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !l.contains("pinned SSH host key ssh-ed25519 " + ssh.FingerprintSHA256(key) + " as phoenix-vm-8101") {
		t.Fatalf("log %q", l.lines)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), "phoenix-vm-8101 "+strings.TrimSpace(line)) {
		t.Fatalf("known_hosts = %q, %v", b, err)
	}
	// Pinned now: a later Wait, or another Guest of the VM, asks nothing
	// more of the agent (the strict fake fails on any extra command).
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := New(o).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPinning(t *testing.T) {
	_, line := hostKey(t, 9)
	for _, tc := range []struct {
		name      string
		pinned    string // known_hosts content before
		calls     []fake.Call
		wantPin   bool
		wantLog   string
		noPinFile bool
	}{
		{name: "already pinned: the agent is not asked", pinned: "phoenix-vm-8101 " + line},
		{name: "another vm pinned only", pinned: "phoenix-vm-8102 " + line,
			calls: []fake.Call{{Line: pinScript, Result: fake.Out(line)}}, wantPin: true},
		{name: "cloud-init may still replace the keys", calls: []fake.Call{{Line: pinScript, Result: fake.Out("pending\n")}}},
		{name: "no host key in the guest", calls: []fake.Call{{Line: pinScript, Result: fake.Out("")}},
			wantLog: "vm 8101: SSH host key not pinned: read host key through the agent: no public host key found"},
		{name: "agent went away meanwhile", calls: []fake.Call{{Line: pinScript, Err: agentDown}}},
		{name: "no known_hosts configured", noPinFile: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "known_hosts")
			if tc.pinned != "" {
				if err := os.WriteFile(file, []byte(tc.pinned), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var pins []string
			l := &logs{}
			o := opts(newAgent(t, always(nil), tc.calls...), nil, l)
			if !tc.noPinFile {
				o.KnownHosts = file
			}
			o.PinHostKey = func(file, alias string, key ssh.PublicKey) error {
				pins = append(pins, alias+" "+string(ssh.MarshalAuthorizedKey(key)))
				return nil
			}
			g := New(o)
			for range 2 { // the second Wait is within pinEvery: no second try
				if err := g.Wait(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.wantPin != (len(pins) == 1) || tc.wantPin && pins[0] != "phoenix-vm-8101 "+line {
				t.Fatalf("pins %q", pins)
			}
			if tc.wantLog != "" && !l.contains(tc.wantLog) {
				t.Fatalf("log %q", l.lines)
			}
		})
	}
}

// zeros is a fixed random source: uploads get predictable names.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A large file goes over SSH while the agent is the channel; a small one,
// a file of unknown size, or one when SSH does not answer goes through the
// agent. Later steps stay on the agent.
func TestLargeFileGoesOverSSH(t *testing.T) {
	const big = "0123456789"
	sized := func(s string) io.Reader { return transport.Sized{Reader: strings.NewReader(s), N: int64(len(s))} }
	for _, tc := range []struct {
		name    string
		r       io.Reader
		dial    error
		overSSH bool
		log     string
	}{
		{name: "large", r: sized(big), overSSH: true, log: "/srv/f (0 MiB) goes over ssh phoenix@10.0.0.5:22, faster than the agent for a large file"},
		{name: "small", r: sized(big[:9])},
		{name: "size unknown", r: strings.NewReader(big)},
		{name: "ssh down", r: sized(big), dial: refused, log: "/srv/f (0 MiB) goes through the agent: SSH: ssh phoenix@10.0.0.5:22: dial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(t, always(nil), fake.Call{Line: "true"})
			conn := sshFake(t)
			l := &logs{}
			o := opts(a, &dialer{answers: []error{tc.dial}, conn: conn}, l)
			o.LargeFile = int64(len(big))
			g := New(o)
			ctx := context.Background()
			if err := g.Put(ctx, "/srv/f", tc.r, transport.Attrs{Mode: 0o600}); err != nil {
				t.Fatal(err)
			}
			got := a.Files["/srv/f"]
			if tc.overSSH {
				got = conn.Files["/srv/f"]
				if _, ok := a.Files["/srv/f"]; ok {
					t.Error("the agent got the file too")
				}
			}
			if string(got) != big[:len(got)] || len(got) < 9 {
				t.Errorf("file %q", got)
			}
			if tc.log != "" && !l.contains(tc.log) {
				t.Errorf("log %q, want %q", l.lines, tc.log)
			}
			// The agent stays the channel.
			if _, err := g.Run(ctx, transport.Cmd{Line: "true"}); err != nil || g.Channel() != "agent" {
				t.Errorf("next command: %v on %q", err, g.Channel())
			}
		})
	}
}

// SSH breaking during a large file: the agent sends it again, whole.
func TestLargeFileSSHBreaks(t *testing.T) {
	a := newAgent(t, always(nil))
	broken := &brokenPut{Transport: sshFake(t)}
	l := &logs{}
	o := opts(a, &dialer{answers: []error{nil}, conn: broken}, l)
	o.LargeFile = 4
	g := New(o)
	r := transport.Sized{Reader: io.MultiReader(strings.NewReader("key=1\n"), strings.NewReader("other=2\n")), N: 14}
	if err := g.Put(context.Background(), "/etc/app.conf", r, transport.Attrs{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if got := string(a.Files["/etc/app.conf"]); got != "key=1\nother=2\n" {
		t.Fatalf("agent got %q", got)
	}
	if !l.contains("sending /etc/app.conf through the agent") {
		t.Errorf("log %q", l.lines)
	}
}

// brokenPut reads part of a file, then loses its connection.
type brokenPut struct{ *fake.Transport }

func (b *brokenPut) Put(_ context.Context, _ string, r io.Reader, _ transport.Attrs) error {
	io.CopyN(io.Discard, r, 3)
	return fmt.Errorf("put: %w: EOF", transport.ErrDisconnected)
}
