package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/transporttest"
)

func TestMain(m *testing.M) {
	// The developer's own agent must not change what the tests see.
	os.Unsetenv("SSH_AUTH_SOCK")
	os.Exit(m.Run())
}

// fixture is a server that trusts one client key, and a known_hosts file
// that pins the server's key under [127.0.0.1]:port.
type fixture struct {
	srv   *testServer
	key   string
	pub   ssh.PublicKey
	known string
}

func newFixture(t *testing.T, hostKeys ...ssh.Signer) *fixture {
	t.Helper()
	key, pub := newKeyFile(t, "")
	srv := startServer(t, []ssh.PublicKey{pub}, hostKeys...)
	f := &fixture{srv: srv, key: key, pub: pub, known: filepath.Join(t.TempDir(), "known_hosts")}
	f.pin(t, knownhosts.Normalize(srv.addr), srv.keys[0].PublicKey())
	return f
}

func (f *fixture) pin(t *testing.T, name string, key ssh.PublicKey) {
	t.Helper()
	if err := PinHostKey(f.known, name, key); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) options() Options {
	return Options{Host: "127.0.0.1", Port: f.srv.port, User: "tester", IdentityFiles: []string{f.key}, KnownHosts: f.known}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	f := newFixture(t)
	transporttest.Run(t, func(t *testing.T) transport.Transport { return dial(t, f.options()) })
}

func TestConformanceOneSession(t *testing.T) {
	// MaxSessions 1: SFTP must not keep the only session from Run.
	f := newFixture(t)
	o := f.options()
	o.MaxSessions = 1
	transporttest.Run(t, func(t *testing.T) transport.Transport { return dial(t, o) })
}

func TestName(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	if want := "ssh tester@127.0.0.1:" + fmt.Sprint(f.srv.port); c.Name() != want {
		t.Errorf("Name() = %q, want %q", c.Name(), want)
	}
}

func TestHostKeys(t *testing.T) {
	other := newSigner(t).PublicKey()
	for _, tc := range []struct {
		name   string
		alias  string
		policy HostKeyPolicy
		// pin prepares known_hosts: name -> key; "server" is the server's key.
		pin      map[string]ssh.PublicKey
		noFile   bool
		wantErr  error
		wantMsg  []string
		wantLine string // a line known_hosts must hold afterwards ("" = file unchanged)
	}{
		{name: "strict known", pin: map[string]ssh.PublicKey{"ADDR": nil}},
		{name: "strict unknown", pin: map[string]ssh.PublicKey{"other-host": other}, wantErr: transport.ErrHostKeyUnknown,
			wantMsg: []string{"ssh-keyscan -p PORT -t ed25519 127.0.0.1 >>", "--host-keys accept-new", "SHA256:"}},
		{name: "strict unknown, no file", noFile: true, wantErr: transport.ErrHostKeyUnknown},
		{name: "strict changed", pin: map[string]ssh.PublicKey{"ADDR": other}, wantErr: transport.ErrHostKeyChanged,
			wantMsg: []string{"REMOTE HOST IDENTIFICATION HAS CHANGED", "known_hosts:1", "ssh-keygen -R"}},
		{name: "accept-new unknown", policy: AcceptNew, noFile: true, wantLine: "ADDR SERVERKEY"},
		{name: "accept-new changed", policy: AcceptNew, pin: map[string]ssh.PublicKey{"ADDR": other}, wantErr: transport.ErrHostKeyChanged},
		{name: "alias known", alias: "phoenix-vm-8101", pin: map[string]ssh.PublicKey{"phoenix-vm-8101": nil, "ADDR": other}},
		{name: "alias unknown, address known", alias: "phoenix-vm-8101", pin: map[string]ssh.PublicKey{"ADDR": nil}, wantErr: transport.ErrHostKeyUnknown,
			wantMsg: []string{"append this line to", "phoenix-vm-8101 ssh-ed25519 "}},
		{name: "alias changed", alias: "phoenix-vm-8101", pin: map[string]ssh.PublicKey{"phoenix-vm-8101": other}, wantErr: transport.ErrHostKeyChanged},
		{name: "alias accept-new", alias: "phoenix-vm-8101", policy: AcceptNew, pin: map[string]ssh.PublicKey{"ADDR": other}, wantLine: "phoenix-vm-8101 SERVERKEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, pub := newKeyFile(t, "")
			srv := startServer(t, []ssh.PublicKey{pub})
			addr := knownhosts.Normalize(srv.addr)
			serverKey := srv.keys[0].PublicKey()
			// A new directory: accept-new must create it.
			known := filepath.Join(t.TempDir(), "ssh", "known_hosts")
			if !tc.noFile {
				for name, k := range tc.pin {
					if name == "ADDR" {
						name = addr
					}
					if k == nil {
						k = serverKey
					}
					if err := PinHostKey(known, name, k); err != nil {
						t.Fatal(err)
					}
				}
			}
			before, _ := os.ReadFile(known)
			o := Options{Host: "127.0.0.1", Port: srv.port, User: "tester", IdentityFiles: []string{key},
				KnownHosts: known, Policy: tc.policy, HostKeyAlias: tc.alias}
			c, err := Dial(testCtx(t), o)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if _, err := c.Run(testCtx(t), transport.Cmd{Line: "true"}); err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Dial error = %v, want %v", err, tc.wantErr)
				}
				for _, m := range tc.wantMsg {
					m = strings.ReplaceAll(m, "PORT", fmt.Sprint(srv.port))
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not contain %q", err, m)
					}
				}
			}
			after, _ := os.ReadFile(known)
			if tc.wantLine == "" {
				if !bytes.Equal(before, after) {
					t.Errorf("known_hosts changed:\n%s", after)
				}
				return
			}
			want := strings.NewReplacer("ADDR", addr, "SERVERKEY", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(serverKey)))).Replace(tc.wantLine)
			if !hasLine(after, want) {
				t.Errorf("known_hosts lacks %q:\n%s", want, after)
			}
			if fi, err := os.Stat(known); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("known_hosts mode: %v %v", fi.Mode(), err)
			}
			if fi, err := os.Stat(filepath.Dir(known)); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("known_hosts directory mode: %v %v", fi.Mode(), err)
			}
			// The written key is trusted from now on, strictly.
			o.Policy = Strict
			c2, err := Dial(testCtx(t), o)
			if err != nil {
				t.Fatalf("second Dial, strict: %v", err)
			}
			c2.Close()
		})
	}
}

func TestHostKeyAlgorithmFollowsKnownHosts(t *testing.T) {
	// The server offers ECDSA and ed25519; only ed25519 is pinned. Without
	// asking for the pinned type, the client's default preference (ECDSA
	// first) would make the key look changed.
	ed := newSigner(t)
	f := newFixture(t, newECDSASigner(t), ed)
	if err := PinHostKey(f.known, knownhosts.Normalize(f.srv.addr), ed.PublicKey()); err != nil {
		t.Fatal(err)
	}
	c := dial(t, f.options())
	if _, err := c.Run(testCtx(t), transport.Cmd{Line: "true"}); err != nil {
		t.Fatal(err)
	}
}

func TestAuth(t *testing.T) {
	good, goodPub := newKeyFile(t, "")
	wrong, _ := newKeyFile(t, "")
	encrypted, _ := newKeyFile(t, "passphrase")
	missing := filepath.Join(t.TempDir(), "id_missing")
	srv := startServer(t, []ssh.PublicKey{goodPub})
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := PinHostKey(known, knownhosts.Normalize(srv.addr), srv.keys[0].PublicKey()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		files    []string
		wantErr  error // nil: success
		wantMsgs []string
	}{
		{"good key", []string{good}, nil, nil},
		{"skips encrypted and missing keys", []string{encrypted, missing, good}, nil, nil},
		{"wrong key", []string{wrong}, transport.ErrAuth, []string{"server refused ssh-ed25519 SHA256:"}},
		{"wrong key, others skipped", []string{encrypted, wrong}, transport.ErrAuth, []string{"passphrase"}},
		{"no usable key", []string{encrypted, missing}, errNoKey, []string{"passphrase", "id_missing: no such file"}},
		{"no key at all", nil, errNoKey, []string{"SSH_AUTH_SOCK is not set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(testCtx(t), Options{Host: "127.0.0.1", Port: srv.port, User: "tester", IdentityFiles: tc.files, KnownHosts: known})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if tc.wantErr == errNoKey {
				if errors.Is(err, transport.ErrAuth) || !strings.Contains(err.Error(), "no usable key") {
					t.Errorf("error = %v, want a local 'no usable key' error", err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Errorf("error = %v, want %v", err, tc.wantErr)
			}
			for _, m := range tc.wantMsgs {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
		})
	}
}

var errNoKey = errors.New("no usable key (test marker)")

func TestAuthWithAgent(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				agent.ServeAgent(keyring, conn)
				conn.Close()
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)

	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, []ssh.PublicKey{pub})
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := PinHostKey(known, knownhosts.Normalize(srv.addr), srv.keys[0].PublicKey()); err != nil {
		t.Fatal(err)
	}
	// An unreadable identity file does not stop the agent's key.
	c := dial(t, Options{Host: "127.0.0.1", Port: srv.port, User: "tester", KnownHosts: known,
		IdentityFiles: []string{filepath.Join(t.TempDir(), "missing")}})
	if res, err := c.Run(testCtx(t), transport.Cmd{Line: "echo via agent"}); err != nil || string(res.Stdout) != "via agent\n" {
		t.Fatalf("Run: %q %v", res.Stdout, err)
	}
}

func TestUnreachable(t *testing.T) {
	f := newFixture(t)

	// A closed port: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	o := f.options()
	o.Port = closedPort
	if _, err := Dial(testCtx(t), o); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("refused: error = %v, want ErrUnreachable", err)
	}

	// A port that accepts but never speaks SSH: the connect timeout ends it.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	o = f.options()
	o.Port = mute.Addr().(*net.TCPAddr).Port
	o.ConnectTimeout = 200 * time.Millisecond
	_, err = Dial(testCtx(t), o)
	if !errors.Is(err, transport.ErrUnreachable) || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("mute server: error = %v, want ErrUnreachable after the connect timeout", err)
	}

	// The caller's cancellation is reported as such, not as unreachable.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	o.ConnectTimeout = time.Minute
	_, err = Dial(ctx, o)
	if !errors.Is(err, context.Canceled) || errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("cancelled Dial: error = %v, want context.Canceled only", err)
	}
}

func TestRunStoppedOnTimeout(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	res, err := c.Run(testCtx(t), transport.Cmd{Line: "echo started; sleep 300", Timeout: 300 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timeout 300ms: stopped") {
		t.Fatalf("error = %v, want a stop after the timeout", err)
	}
	if transport.ExitCode(err) != -1 {
		t.Errorf("a stopped command is not an *ExitError: %v", err)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("output before the stop is kept: %q", res.Stdout)
	}
	if _, signals, _ := f.srv.stats(); !slices.Equal(signals, []string{"TERM"}) {
		t.Errorf("signals = %q, want TERM only: sleep ends on it", signals)
	}
	// The slot of the stopped command is free again: a cap of 1 still runs.
	o := f.options()
	o.MaxSessions = 1
	one := dial(t, o)
	one.Run(testCtx(t), transport.Cmd{Line: "sleep 300", Timeout: 100 * time.Millisecond})
	if _, err := one.Run(testCtx(t), transport.Cmd{Line: "true"}); err != nil {
		t.Errorf("after a stopped command: %v", err)
	}
}

// runCancelled starts line, cancels its context once it printed "started",
// and returns what Run returned.
func runCancelled(t *testing.T, c *Client, ctx context.Context, line string, afterCancel func()) (transport.Result, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := make(chan struct{})
	type ran struct {
		res transport.Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := c.Run(ctx, transport.Cmd{Line: line, Stdout: &signalWriter{on: "started", ch: started}})
		done <- ran{res, err}
	}()
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("the command ended before it was cancelled: %v", r.err)
	}
	cancel()
	if afterCancel != nil {
		afterCancel()
	}
	select {
	case r := <-done:
		return r.res, r.err
	case <-time.After(time.Minute):
		t.Fatal("Run did not return a minute after its context was cancelled")
	}
	return transport.Result{}, nil
}

// signalWriter closes ch once the output holds on.
type signalWriter struct {
	mu   sync.Mutex
	buf  []byte
	on   string
	ch   chan struct{}
	done bool
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if !w.done && strings.Contains(string(w.buf), w.on) {
		w.done = true
		close(w.ch)
	}
	return len(p), nil
}

// A cancelled command gets SIGTERM and the time to clean up: its trap runs,
// its output is kept, and nothing is killed.
func TestRunCancelledCleansUp(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	res, err := runCancelled(t, c, testCtx(t), `trap 'echo cleaned up; exit 3' TERM; echo started; while :; do sleep 0.05; done`, nil)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled: stopped on SIGTERM with exit 3") {
		t.Errorf("error = %v, want cancelled, stopped with exit 3", err)
	}
	if string(res.Stdout) != "started\ncleaned up\n" {
		t.Errorf("stdout = %q, want the trap's output", res.Stdout)
	}
	if _, signals, _ := f.srv.stats(); !slices.Equal(signals, []string{"TERM"}) {
		t.Errorf("signals = %q, want TERM only", signals)
	}
}

// A command that ignores SIGTERM is killed after the grace period.
func TestRunKilledAfterGrace(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.Grace = 200 * time.Millisecond
	c := dial(t, o)
	_, err := runCancelled(t, c, testCtx(t), `trap '' TERM; echo started; sleep 300`, nil)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "sent SIGTERM, then SIGKILL after 200ms") {
		t.Errorf("error = %v, want SIGKILL after the grace", err)
	}
	waitFor(t, "TERM then KILL", func() bool {
		_, signals, _ := f.srv.stats()
		return slices.Equal(signals, []string{"TERM", "KILL"})
	})
	waitFor(t, "the command gone", func() bool { return f.srv.runningNow() == 0 })
}

// An abort (a second Ctrl-C) ends the grace at once, and a command started
// after the abort gets SIGKILL straight away.
func TestRunAbortSkipsGrace(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.Grace = time.Hour
	c := dial(t, o)
	ctx, abort := transport.WithAbort(testCtx(t))
	_, err := runCancelled(t, c, ctx, `trap '' TERM; echo started; sleep 300`, func() {
		waitFor(t, "TERM", func() bool { _, s, _ := f.srv.stats(); return len(s) == 1 })
		abort()
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "then SIGKILL: aborted") {
		t.Errorf("error = %v, want an abort during the grace", err)
	}
	_, err = runCancelled(t, c, ctx, `trap '' TERM; echo started; sleep 300`, nil)
	if !strings.Contains(err.Error(), "aborted: sent SIGKILL") {
		t.Errorf("error = %v, want SIGKILL at once", err)
	}
	if _, signals, _ := f.srv.stats(); len(signals) < 2 || slices.Contains(signals[2:], "TERM") {
		t.Errorf("signals = %q: TERM after the abort", signals)
	}
	waitFor(t, "the commands gone", func() bool { return f.srv.runningNow() == 0 })
	// A cancelled context starts nothing.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Run(cctx, transport.Cmd{Line: "true"}); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not started") {
		t.Errorf("run with a cancelled context: %v", err)
	}
}

func TestSessionCap(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.MaxSessions = 3
	c := dial(t, o)
	gate := filepath.Join(t.TempDir(), "gate")
	line := "while [ ! -e " + transport.Quote(gate) + " ]; do sleep 0.01; done"
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Run(testCtx(t), transport.Cmd{Line: line})
			errs <- err
		}()
	}
	// Hold every command until the cap is reached: then the peak is exact.
	waitFor(t, "3 commands running", func() bool { return f.srv.runningNow() == 3 })
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	if peak, _, _ := f.srv.stats(); peak != 3 {
		t.Errorf("at most %d commands ran at once, want exactly the cap 3", peak)
	}
}

func TestSessionWaitHonoursContext(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.MaxSessions = 1
	c := dial(t, o)
	gate := filepath.Join(t.TempDir(), "gate")
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(testCtx(t), transport.Cmd{Line: "while [ ! -e " + transport.Quote(gate) + " ]; do sleep 0.01; done"})
		done <- err
	}()
	waitFor(t, "the first command running", func() bool { return f.srv.runningNow() == 1 })
	_, err := c.Run(testCtx(t), transport.Cmd{Line: "true", Timeout: 100 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a free session") {
		t.Errorf("second command: %v, want a timeout while waiting for a session", err)
	}
	os.WriteFile(gate, nil, 0o600)
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestJumpHost(t *testing.T) {
	jumpFix := newFixture(t)
	jump := dial(t, jumpFix.options())

	// The target trusts its own client key; its key is pinned by alias only,
	// as a guest behind the node is.
	targetKey, targetPub := newKeyFile(t, "")
	target := startServer(t, []ssh.PublicKey{targetPub})
	known := filepath.Join(t.TempDir(), "guest_known_hosts")
	if err := PinHostKey(known, "phoenix-vm-8101", target.keys[0].PublicKey()); err != nil {
		t.Fatal(err)
	}
	o := Options{Host: "127.0.0.1", Port: target.port, User: "guest", IdentityFiles: []string{targetKey},
		KnownHosts: known, HostKeyAlias: "phoenix-vm-8101", Jump: jump}
	c := dial(t, o)
	res, err := c.Run(testCtx(t), transport.Cmd{Line: "echo behind the node"})
	if err != nil || string(res.Stdout) != "behind the node\n" {
		t.Fatalf("Run through the jump host: %q %v", res.Stdout, err)
	}
	if _, _, forwards := jumpFix.srv.stats(); len(forwards) != 1 || forwards[0] != target.addr {
		t.Errorf("jump host forwarded to %q, want [%s]", forwards, target.addr)
	}
	if !strings.HasSuffix(c.Name(), " via tester@"+jumpFix.srv.addr) {
		t.Errorf("Name() = %q", c.Name())
	}
	var got bytes.Buffer
	if err := c.Put(testCtx(t), filepath.Join(t.TempDir(), "f"), strings.NewReader("through the jump"), transport.Attrs{Mode: 0o600}); err != nil {
		t.Errorf("Put through the jump host: %v", err)
	}
	if err := c.Get(testCtx(t), "/etc/hostname", &got); err != nil {
		t.Errorf("Get through the jump host: %v", err)
	}

	// Nothing listens behind the jump host: unreachable, as a direct refusal is.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	o.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if _, err := Dial(testCtx(t), o); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("closed port behind the jump host: %v, want ErrUnreachable", err)
	}
}

func TestKeepAlive(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.KeepAlive = 20 * time.Millisecond
	c := dial(t, o)
	// Answered keepalives keep the connection.
	waitFor(t, "3 keepalives", func() bool { return f.srv.keepalives.Load() >= 3 })
	if _, err := c.Run(testCtx(t), transport.Cmd{Line: "true"}); err != nil {
		t.Fatalf("after answered keepalives: %v", err)
	}
	// A peer that stops answering is dropped, and a waiting command learns it.
	f.srv.ignoreKeepalive.Store(true)
	_, err := c.Run(testCtx(t), transport.Cmd{Line: "sleep 300"})
	if !errors.Is(err, transport.ErrDisconnected) || !strings.Contains(err.Error(), "no keepalive answer") {
		t.Fatalf("error = %v, want ErrDisconnected from the keepalive", err)
	}
	if _, err := c.Run(testCtx(t), transport.Cmd{Line: "true"}); !errors.Is(err, transport.ErrDisconnected) {
		t.Errorf("Run on a dropped connection: %v, want ErrDisconnected", err)
	}
	if err := c.Put(testCtx(t), "/tmp/x", strings.NewReader("x"), transport.Attrs{Mode: 0o644}); !errors.Is(err, transport.ErrDisconnected) {
		t.Errorf("Put on a dropped connection: %v, want ErrDisconnected", err)
	}
}

func TestDisconnectDuringRun(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(testCtx(t), transport.Cmd{Line: "sleep 300"})
		done <- err
	}()
	waitFor(t, "the command running", func() bool { return f.srv.runningNow() == 1 })
	f.srv.dropAll() // a reboot
	if err := <-done; !errors.Is(err, transport.ErrDisconnected) || !strings.Contains(err.Error(), "connection lost to tester@"+f.srv.addr+": ") {
		t.Errorf("error = %v, want ErrDisconnected naming the host", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after the connection broke: %v", err)
	}
}

// A command started right after the connection broke, before the client's
// reader noticed (opening its session gets EOF), names the lost host too.
func TestRunAfterDisconnect(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	if _, err := c.Run(testCtx(t), transport.Cmd{Line: "true"}); err != nil { // the server holds the connection
		t.Fatal(err)
	}
	f.srv.dropAll()
	_, err := c.Run(testCtx(t), transport.Cmd{Line: "true"})
	if !errors.Is(err, transport.ErrDisconnected) || !strings.Contains(err.Error(), "connection lost to tester@"+f.srv.addr+": ") {
		t.Errorf("error = %v, want ErrDisconnected naming the host", err)
	}
}

func TestFailedPutLeavesNoTrace(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	dir := t.TempDir()
	target := filepath.Join(dir, "conf")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "blocker")
	if err := os.MkdirAll(filepath.Join(blocker, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		path string
		r    func() *bytes.Reader
	}{
		// The rename fails: a non-empty directory is in the way.
		{"rename refused", testCtx(t), blocker, func() *bytes.Reader { return bytes.NewReader([]byte("x")) }},
		{"cancelled", ctx, target, func() *bytes.Reader { return bytes.NewReader(make([]byte, 1<<20)) }},
	} {
		if err := c.Put(tc.ctx, tc.path, tc.r(), transport.Attrs{Mode: 0o644}); err == nil {
			t.Errorf("%s: Put succeeded", tc.name)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Errorf("target changed: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "blocker conf" {
		t.Errorf("directory holds %q, want only blocker and conf", names)
	}
}

func TestLargeBinaryPutGet(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	data := make([]byte, 8<<20)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "blob.bin")
	if err := c.Put(testCtx(t), p, bytes.NewReader(data), transport.Attrs{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("file on the server: %d bytes, equal %v, %v", len(onDisk), bytes.Equal(onDisk, data), err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	var back bytes.Buffer
	if err := c.Get(testCtx(t), p, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Bytes(), data) {
		t.Errorf("Get returned %d bytes, not the ones put", back.Len())
	}
}

func TestSFTPReopensAfterBreak(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.options())
	dir := t.TempDir()
	if err := c.Put(testCtx(t), filepath.Join(dir, "a"), strings.NewReader("a"), transport.Attrs{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	dead := c.sftp.dead
	f.srv.killSFTP()
	waitFor(t, "the SFTP client to notice", func() bool {
		select {
		case <-dead:
			return true
		default:
			return false
		}
	})
	if err := c.Put(testCtx(t), filepath.Join(dir, "b"), strings.NewReader("b"), transport.Attrs{Mode: 0o644}); err != nil {
		t.Fatalf("Put after the SFTP session broke: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b")); string(b) != "b" {
		t.Errorf("b = %q", b)
	}
}

// tripwire reads n bytes, runs trip, then reads on.
type tripwire struct {
	r    io.Reader
	n    int
	trip func()
}

func (t *tripwire) Read(p []byte) (int, error) {
	if t.n <= 0 && t.trip != nil {
		t.trip()
		t.trip = nil
	}
	if t.n > 0 && len(p) > t.n {
		p = p[:t.n]
	}
	n, err := t.r.Read(p)
	t.n -= n
	return n, err
}

// Finding 9 of issue 8: an SFTP transfer to a server that stops answering
// ends a Floor after the last byte (it used to wait forever), leaves no temp file, and
// the next transfer opens a new session.
func TestSFTPTransferTooSlow(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.Transfer = transport.Pace{Floor: 300 * time.Millisecond, MinRate: 8 << 20}
	c := dial(t, o)
	dir := t.TempDir()
	target := filepath.Join(dir, "image.bin")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := &tripwire{r: bytes.NewReader(make([]byte, 16<<20)), n: 2 << 20, trip: func() { f.srv.stallSFTP.Store(true) }}
	err := c.Put(testCtx(t), target, src, transport.Attrs{Mode: 0o644})
	var slow *transport.TooSlowError
	if !errors.As(err, &slow) || !strings.HasPrefix(err.Error(), "put "+target+": transfer stalled: nothing moved for 300ms, after ") {
		t.Fatalf("Put to a stalled server: %v", err)
	}
	f.srv.stallSFTP.Store(false)
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Errorf("target changed: %q", b)
	}
	waitFor(t, "the temp file to be removed", func() bool {
		entries, _ := os.ReadDir(dir)
		return len(entries) == 1
	})
	if err := c.Put(testCtx(t), target, strings.NewReader("new"), transport.Attrs{Mode: 0o644}); err != nil {
		t.Fatalf("Put after the stalled one: %v", err)
	}

	// Get: the same bound on the way back.
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &tripwriter{n: 2 << 20, trip: func() { f.srv.stallSFTP.Store(true) }}
	err = c.Get(testCtx(t), big, w)
	f.srv.stallSFTP.Store(false)
	if !errors.As(err, &slow) {
		t.Fatalf("Get from a stalled server: %v", err)
	}
}

// tripwriter accepts n bytes, runs trip, then accepts everything.
type tripwriter struct {
	n    int
	trip func()
}

func (t *tripwriter) Write(p []byte) (int, error) {
	t.n -= len(p)
	if t.n <= 0 && t.trip != nil {
		t.trip()
		t.trip = nil
	}
	return len(p), nil
}

// waitFor polls cond; it fails the test only when cond never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sessionErr, on a connection whose reader has not noticed it is gone: a
// session that cannot open (EOF, a reset) is the connection lost, named by
// host; the server refusing the channel is its answer, not a loss.
func TestSessionErr(t *testing.T) {
	c := &Client{name: "ssh root@10.0.0.2:22", done: make(chan struct{})}
	for _, tc := range []struct {
		err  error
		lost bool
	}{
		{io.EOF, true},
		{fmt.Errorf("write tcp: %w", syscall.ECONNRESET), true},
		{&ssh.OpenChannelError{Reason: ssh.ResourceShortage, Message: "no more sessions"}, false},
	} {
		got := c.sessionErr(tc.err)
		if errors.Is(got, transport.ErrDisconnected) != tc.lost {
			t.Errorf("sessionErr(%v) = %v, lost %v", tc.err, got, tc.lost)
		}
		if tc.lost && !strings.Contains(got.Error(), "connection lost to root@10.0.0.2:22") {
			t.Errorf("sessionErr(%v) = %v, want the host named", tc.err, got)
		}
	}
}
