package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/agent"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

const env = "export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8; "

// nodeExec is the node command that runs guestLine in VM 8101 and waits for
// it up to limit seconds, spelled out independently of the code under test.
func nodeExec(guestLine string, stdin bool, limit int) string {
	pass := ""
	if stdin {
		pass = "--pass-stdin 1 "
	}
	return "o=$(qm guest exec 8101 --synchronous 0 " + pass + "-- /bin/sh -c " + transport.Quote(env+guestLine) + ") || exit; " +
		`p=$(printf %s "$o" | tr -dc 0-9); [ -n "$p" ] || { printf 'qm guest exec printed no pid: %s\n' "$o" >&2; exit 125; }; printf 'pid %s\n' "$p"; ` +
		fmt.Sprintf("timeout %d sh -c ", limit) +
		`'n=0; while :; do s=$(qm guest exec-status "$1" "$2") || exit; if printf '\''%s\n'\'' "$s" | grep -q '\''"exited" *: *1'\''; then printf '\''%s\n'\'' "$s"; exit 0; fi; n=$((n+1)); if [ $n -le 10 ]; then sleep 0.1; elif [ $n -le 18 ]; then sleep 0.25; else sleep 1; fi; done'` +
		fmt.Sprintf(` sh 8101 "$p"; c=$?; [ $c -ne 124 ] || printf 'guest process %%s still running after %ds\n' "$p" >&2; exit $c`, limit)
}

func TestRunNodeCommandExactly(t *testing.T) {
	want := `o=$(qm guest exec 8101 --synchronous 0 -- /bin/sh -c 'export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8; echo '\''it'\''\'\'''\''s'\''') || exit; p=$(printf %s "$o" | tr -dc 0-9); [ -n "$p" ] || { printf 'qm guest exec printed no pid: %s\n' "$o" >&2; exit 125; }; printf 'pid %s\n' "$p"; timeout 30 sh -c 'n=0; while :; do s=$(qm guest exec-status "$1" "$2") || exit; if printf '\''%s\n'\'' "$s" | grep -q '\''"exited" *: *1'\''; then printf '\''%s\n'\'' "$s"; exit 0; fi; n=$((n+1)); if [ $n -le 10 ]; then sleep 0.1; elif [ $n -le 18 ]; then sleep 0.25; else sleep 1; fi; done' sh 8101 "$p"; c=$?; [ $c -ne 124 ] || printf 'guest process %s still running after 30s\n' "$p" >&2; exit $c`
	node := fake.New(t, fake.Call{Line: want, Result: fake.Out("pid 4242\n{\n   \"exitcode\" : 0,\n   \"exited\" : 1,\n   \"out-data\" : \"it's\\n\"\n}\n")})
	res, err := agent.New(node, "pve", 8101).Run(context.Background(), transport.Cmd{Line: transport.Command("echo", "it's"), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "it's\n" {
		t.Fatalf("stdout %q", res.Stdout)
	}
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stdin      string
		node       fake.Call // Line is filled in
		wantRes    transport.Result
		wantCode   int    // transport.ExitCode of the error
		wantErr    string // substring of the error; "" = no error
		wantIs     error
		wantExitAs bool
	}{
		{
			name:    "output",
			node:    fake.Call{Result: fake.Out("{\n   \"exitcode\" : 0,\n   \"exited\" : 1,\n   \"out-data\" : \"hi\\n\"\n}\n")},
			wantRes: transport.Result{Stdout: []byte("hi\n")},
		},
		{
			name:    "no output at all",
			node:    fake.Call{Result: fake.Out("{\n   \"exitcode\" : 0,\n   \"exited\" : 1\n}\n")},
			wantRes: transport.Result{},
		},
		{
			name:       "exit code and stderr",
			node:       fake.Call{Result: fake.Out("{\n   \"err-data\" : \"err\\n\",\n   \"exitcode\" : 3,\n   \"exited\" : 1,\n   \"out-data\" : \"out\\n\"\n}\n")},
			wantRes:    transport.Result{Stdout: []byte("out\n"), Stderr: []byte("err\n"), ExitCode: 3},
			wantCode:   3,
			wantErr:    "exit 3: err",
			wantExitAs: true,
		},
		{
			name:    "double-encoded bytes come back as the guest's bytes",
			node:    fake.Call{Result: fake.Out("{\n   \"exitcode\" : 0,\n   \"exited\" : 1,\n   \"out-data\" : \"Ã¤\\u0000\\u00ff\\n\"\n}\n")},
			wantRes: transport.Result{Stdout: []byte{0xc3, 0xa4, 0x00, 0xff, '\n'}},
		},
		{
			name:       "killed by a signal",
			node:       fake.Call{Result: fake.Out("{\n   \"exited\" : 1,\n   \"signal\" : 9\n}\n")},
			wantRes:    transport.Result{ExitCode: 137},
			wantCode:   137,
			wantErr:    "killed by signal 9",
			wantExitAs: true,
		},
		{
			name:     "output cut at 16 MiB",
			node:     fake.Call{Result: fake.Out("{\n   \"exitcode\" : 0,\n   \"exited\" : 1,\n   \"out-data\" : \"x\",\n   \"out-truncated\" : 1\n}\n")},
			wantRes:  transport.Result{Stdout: []byte("x")},
			wantCode: -1,
			wantErr:  "output cut by the guest agent",
		},
		{
			name:    "stdin is passed",
			stdin:   "line one\nline two\n",
			node:    fake.Call{Stdin: "line one\nline two\n", Result: fake.Out("{\"exitcode\":0,\"exited\":1}")},
			wantRes: transport.Result{},
		},
		{
			name:     "node-side timeout",
			node:     fake.Call{Result: fake.Fail(124, "guest process 4242 still running after 30s\n")},
			wantCode: -1,
			wantErr:  "guest process 4242 still running after 30s",
			wantIs:   context.DeadlineExceeded,
		},
		{
			name:     "guest-side agent error is a failure, not unavailability",
			node:     fake.Call{Result: fake.Fail(255, "Agent error: Guest agent command failed, error was 'Failed to execute child process “/bin/sh” (No such file or directory)'\n")},
			wantCode: -1,
			wantErr:  "qm guest exec: exit 255: Agent error: Guest agent command failed",
		},
		{
			name:     "node connection lost",
			node:     fake.Call{Err: fmt.Errorf("ssh root@pve: %w", transport.ErrDisconnected)},
			wantCode: -1,
			wantErr:  "qm guest exec: ssh root@pve: connection lost",
			wantIs:   transport.ErrDisconnected,
		},
		{
			name:     "garbage instead of a status",
			node:     fake.Call{Result: fake.Out("Use of uninitialized value\n")},
			wantCode: -1,
			wantErr:  "qm guest exec-status: invalid character",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := transport.Cmd{Line: "do-it", Timeout: 30 * time.Second}
			if tc.stdin != "" {
				cmd.Stdin = strings.NewReader(tc.stdin)
			}
			tc.node.Line = nodeExec("do-it", tc.stdin != "", 30)
			res, err := agent.New(fake.New(t, tc.node), "pve", 8101).Run(context.Background(), cmd)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			if got := transport.ExitCode(err); got != tc.wantCode {
				t.Errorf("ExitCode(err) = %d, want %d", got, tc.wantCode)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.wantIs)
			}
			var ee *transport.ExitError
			if errors.As(err, &ee) != tc.wantExitAs {
				t.Errorf("errors.As(*ExitError) = %v, want %v", !tc.wantExitAs, tc.wantExitAs)
			}
			if errors.Is(err, transport.ErrAgentUnavailable) {
				t.Errorf("err %v must not be ErrAgentUnavailable", err)
			}
			if !bytes.Equal(res.Stdout, tc.wantRes.Stdout) || !bytes.Equal(res.Stderr, tc.wantRes.Stderr) || res.ExitCode != tc.wantRes.ExitCode {
				t.Errorf("result = %+v, want %+v", res, tc.wantRes)
			}
		})
	}
}

// Errors that prove the command never started: the agent is unavailable,
// and the caller may run the command elsewhere.
func TestRunAvailabilityErrors(t *testing.T) {
	for _, text := range []string{
		"No QEMU guest agent configured",
		"VM 8101 is not running",
		"QEMU guest agent is not running",
		"VM 8101 qmp command 'guest-exec' failed - unable to connect to VM 8101 qga socket - timeout after 31 retries",
		"VM 8101 not running",
	} {
		t.Run(text, func(t *testing.T) {
			node := fake.New(t, fake.Call{Line: nodeExec("true", false, 30), Result: fake.Fail(255, text+"\n")})
			_, err := agent.New(node, "pve", 8101).Run(context.Background(), transport.Cmd{Line: "true", Timeout: 30 * time.Second})
			if !errors.Is(err, transport.ErrAgentUnavailable) {
				t.Fatalf("err = %v, want ErrAgentUnavailable", err)
			}
			if err.Error() != text {
				t.Fatalf("err = %q, want qm's text %q", err, text)
			}
			if transport.ExitCode(err) != -1 {
				t.Fatalf("an unavailable agent must not look like a guest exit status: %d", transport.ExitCode(err))
			}
		})
	}
}

// Errors after the command started, or that do not prove it never did,
// are "status unknown": never ErrAgentUnavailable alone, so nobody runs the
// command again over SSH.
func TestRunStatusUnknown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		node      fake.Call
		pid       string // in the message; "" when no pid was printed
		agentGone bool   // the cause is the agent (later commands may go over SSH)
		cause     string
	}{
		{
			name:      "agent dies while the command runs",
			node:      fake.Call{Result: transport.Result{ExitCode: 255, Stdout: []byte("pid 4242\n"), Stderr: []byte("VM 8101 qmp command 'guest-exec-status' failed - got timeout\n")}},
			pid:       "4242",
			agentGone: true,
			cause:     "VM 8101 qmp command 'guest-exec-status' failed - got timeout",
		},
		{
			name:      "agent stops answering after exec-status said running",
			node:      fake.Call{Result: transport.Result{ExitCode: 255, Stdout: []byte("pid 77\n"), Stderr: []byte("QEMU guest agent is not running\n")}},
			pid:       "77",
			agentGone: true,
			cause:     "QEMU guest agent is not running",
		},
		{
			name:      "exec request sent, no answer",
			node:      fake.Call{Result: fake.Fail(255, "VM 8101 qmp command 'guest-exec' failed - got timeout\n")},
			agentGone: true,
			cause:     "VM 8101 qmp command 'guest-exec' failed - got timeout",
		},
		{
			name:  "node connection lost while the command ran",
			node:  fake.Call{Result: fake.Out("pid 9\n"), Err: fmt.Errorf("ssh root@pve: %w", transport.ErrDisconnected)},
			pid:   "9",
			cause: "qm guest exec-status: ssh root@pve: connection lost",
		},
		{
			name:  "node connection lost, nothing printed",
			node:  fake.Call{Err: fmt.Errorf("ssh root@pve: %w", transport.ErrDisconnected)},
			cause: "qm guest exec: ssh root@pve: connection lost",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.node.Line = nodeExec("apt-get install -y nfs-common", false, 30)
			_, err := agent.New(fake.New(t, tc.node), "pve", 8101).Run(context.Background(), transport.Cmd{Line: "apt-get install -y nfs-common", Timeout: 30 * time.Second})
			var su *transport.StatusUnknownError
			if !errors.As(err, &su) || !errors.Is(err, transport.ErrStatusUnknown) {
				t.Fatalf("err = %v, want a status unknown", err)
			}
			if errors.Is(err, transport.ErrAgentUnavailable) != tc.agentGone {
				t.Errorf("ErrAgentUnavailable = %v, want %v", !tc.agentGone, tc.agentGone)
			}
			want := `run "apt-get install -y nfs-common": status unknown: may have started through agent vm 8101, then ` + tc.cause +
				"; it may still be running or have finished, so it is not run again: check the guest (its effects) before running it again"
			if tc.pid != "" {
				want = `run "apt-get install -y nfs-common": status unknown: started as guest pid ` + tc.pid + " through agent vm 8101, then " + tc.cause +
					"; it may still be running or have finished, so it is not run again: check the guest (ps -p " + tc.pid + ", then its effects) before running it again"
			}
			if err.Error() != want {
				t.Errorf("err = %s\nwant  %s", err, want)
			}
			if transport.ExitCode(err) != -1 {
				t.Errorf("a status unknown must not look like a guest exit status: %d", transport.ExitCode(err))
			}
		})
	}
}

// secretsSeen records the printable form of every node command.
type secretsSeen struct{ printed []string }

func (s *secretsSeen) Run(_ context.Context, c transport.Cmd) (transport.Result, error) {
	s.printed = append(s.printed, c.Printable())
	return fake.Out(`{"exitcode":0,"exited":1}`), nil
}

func TestRunSecretsMaskedInTheNodeLine(t *testing.T) {
	for _, secret := range []string{"s3cret", "two words", "it's mine", `a'b"c$d`} {
		node := &secretsSeen{}
		cmd := transport.Cmd{Line: transport.Command("chpasswd-ish", "--password", secret) + " && echo " + secret, Secrets: []string{secret}}
		if _, err := agent.New(node, "pve", 8101).Run(context.Background(), cmd); err != nil {
			t.Fatal(err)
		}
		// Whatever the quoting, the secret's other characters must not show.
		bare := strings.NewReplacer("'", "", `\`, "")
		for _, p := range node.printed {
			if strings.Contains(bare.Replace(p), bare.Replace(secret)) {
				t.Errorf("secret %q shows in the node line: %s", secret, p)
			}
		}
	}
}

func TestRunWritesOutputToWriters(t *testing.T) {
	node := fake.New(t, fake.Call{Line: nodeExec("x", false, 30), Result: fake.Out(`{"err-data":"e","exitcode":1,"exited":1,"out-data":"o"}`)})
	var out, errb bytes.Buffer
	_, err := agent.New(node, "pve", 8101).Run(context.Background(), transport.Cmd{Line: "x", Timeout: 30 * time.Second, Stdout: &out, Stderr: &errb})
	if transport.ExitCode(err) != 1 {
		t.Fatalf("err = %v", err)
	}
	if out.String() != "o" || errb.String() != "e" {
		t.Fatalf("writers got %q / %q", out.String(), errb.String())
	}
}

func TestRunRefusesStdinOverOneMiB(t *testing.T) {
	node := fake.New(t) // no node command may run
	_, err := agent.New(node, "pve", 8101).Run(context.Background(), transport.Cmd{Line: "cat", Stdin: bytes.NewReader(make([]byte, 1<<20))})
	if err == nil || !strings.Contains(err.Error(), "at most 1 MiB - 1 B") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunTimeoutFromContextAndDefault(t *testing.T) {
	a := agent.New(nil, "pve", 8101)
	a.DefaultTimeout = 90 * time.Second
	// No Cmd.Timeout, no deadline: the default bounds the wait.
	a.Node = fake.New(t, fake.Call{Line: nodeExec("true", false, 90), Result: fake.Out(`{"exitcode":0,"exited":1}`)})
	if _, err := a.Run(context.Background(), transport.Cmd{Line: "true"}); err != nil {
		t.Fatal(err)
	}
	// A context deadline sooner than Cmd.Timeout wins (rounded up to a second).
	ctx, cancel := context.WithTimeout(context.Background(), 4500*time.Millisecond)
	defer cancel()
	a.Node = fake.New(t, fake.Call{Line: nodeExec("true", false, 5), Result: fake.Out(`{"exitcode":0,"exited":1}`)})
	if _, err := a.Run(ctx, transport.Cmd{Line: "true", Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// An expired context runs nothing.
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	a.Node = fake.New(t)
	if _, err := a.Run(expired, transport.Cmd{Line: "true"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestPing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		res       transport.Result
		wantErr   string
		wantUnavl bool
	}{
		{name: "answers", res: fake.Out("")},
		{name: "not running", res: fake.Fail(255, "QEMU guest agent is not running\n"), wantErr: "QEMU guest agent is not running", wantUnavl: true},
		{name: "not configured", res: fake.Fail(255, "No QEMU guest agent configured\n"), wantErr: "No QEMU guest agent configured", wantUnavl: true},
		{name: "error reply", res: fake.Out("{\n   \"error\" : {\n      \"class\" : \"GenericError\",\n      \"desc\" : \"x\"\n   }\n}\n"), wantErr: `guest-ping: { "error" : {`, wantUnavl: true},
		{name: "no such vm", res: fake.Fail(2, "Configuration file 'nodes/pve/qemu-server/8101.conf' does not exist\n"), wantErr: "qm guest cmd ping: exit 2: Configuration file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := fake.New(t, fake.Call{Line: "qm guest cmd 8101 ping", Result: tc.res})
			err := agent.New(node, "pve", 8101).Ping(context.Background())
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if errors.Is(err, transport.ErrAgentUnavailable) != tc.wantUnavl {
				t.Fatalf("errors.Is(ErrAgentUnavailable) = %v", !tc.wantUnavl)
			}
		})
	}
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// upload is the transport.Upload the agent makes for dest with zeros as its
// random source.
func upload(dest string) transport.Upload {
	u, _ := transport.NewUpload(dest, zeros{})
	return u
}

// zeros is a fixed random source: uploads get predictable names.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// newAgent is the agent of VM 8101 on node with predictable upload names.
func newAgent(node transport.Runner) *agent.Transport {
	a := agent.New(node, "pve", 8101)
	a.Rand = zeros{}
	return a
}

var exited0 = fake.Out(`{"exitcode":0,"exited":1}`)

// limit is the node-side bound, in seconds, of a transfer command moving n
// bytes: 60 s plus 1 s per MiB, rounded up.
func limit(n int) int { return int(math.Ceil(transport.Pace{}.Limit(int64(n)).Seconds())) }

func TestPutSmallInOneRoundTrip(t *testing.T) {
	content := []byte("line\nä\x00\xff")
	a := transport.Attrs{Mode: 0o640, Owner: "app:app"}
	node := fake.New(t,
		fake.Call{Line: nodeExec(upload("/etc/motd").Once(sum(content), a), true, limit(len(content))), Stdin: string(content), Result: exited0},
	)
	if err := newAgent(node).Put(context.Background(), "/etc/motd", bytes.NewReader(content), a); err != nil {
		t.Fatal(err)
	}
}

func TestPutKeepsContentOffTheCommandLine(t *testing.T) {
	rec := &recorder{}
	a := agent.New(rec, "pve", 8101)
	if err := a.Put(context.Background(), "/etc/secret", strings.NewReader("hunter2"), transport.Attrs{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if len(rec.cmds) != 1 || rec.cmds[0].Stdin == nil {
		t.Fatalf("want one node command with the content on stdin, got %d", len(rec.cmds))
	}
	if l := rec.cmds[0].Line; strings.Contains(l, "hunter2") || strings.Contains(l, base64.StdEncoding.EncodeToString([]byte("hunter2"))) {
		t.Fatalf("the content is on the command line: %s", l)
	}
}

// recorder is a node that answers every command with a finished exec status.
type recorder struct{ cmds []transport.Cmd }

func (r *recorder) Run(_ context.Context, c transport.Cmd) (transport.Result, error) {
	r.cmds = append(r.cmds, c)
	return exited0, nil
}

func TestPutLargeInChunks(t *testing.T) {
	content := make([]byte, 2*agent.MaxStdin+1000)
	for i := range content {
		content[i] = byte(i * 7)
	}
	u := upload("/srv/my dir/big.bin")
	begun := fake.Out(`{"exitcode":0,"exited":1,"out-data":"64769:1234\n"}`)
	node := fake.New(t,
		fake.Call{Line: nodeExec(u.Begin(), true, limit(agent.MaxStdin)), Stdin: string(content[:agent.MaxStdin]), Result: begun},
		fake.Call{Line: nodeExec(u.Append("64769:1234"), true, limit(agent.MaxStdin)), Stdin: string(content[agent.MaxStdin : 2*agent.MaxStdin]), Result: exited0},
		fake.Call{Line: nodeExec(u.Append("64769:1234"), true, limit(len(content)-2*agent.MaxStdin)), Stdin: string(content[2*agent.MaxStdin:]), Result: exited0},
		fake.Call{Line: nodeExec(u.Commit("64769:1234", sum(content), transport.Attrs{Mode: 0o755}), false, limit(len(content))), Result: exited0},
	)
	if err := newAgent(node).Put(context.Background(), "/srv/my dir/big.bin", bytes.NewReader(content), transport.Attrs{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
}

func TestPutFailures(t *testing.T) {
	a644 := transport.Attrs{Mode: 0o644}
	t.Run("missing directory: the shell's error, then a cleanup that finds nothing", func(t *testing.T) {
		u := upload("/nope/f")
		node := fake.New(t,
			fake.Call{Line: nodeExec(u.Once(sum([]byte("x")), a644), true, limit(1)), Stdin: "x",
				Result: fake.Out(`{"err-data":"mkdir: cannot create directory '/nope/.phoenix-0000000000000000': No such file or directory\n","exitcode":1,"exited":1}`)},
			fake.Call{Line: nodeExec(u.Abort(""), false, 15), Result: fake.Out(`{"exitcode":1,"exited":1}`)},
		)
		err := newAgent(node).Put(context.Background(), "/nope/f", strings.NewReader("x"), a644)
		if err == nil || !strings.Contains(err.Error(), "put /nope/f: ") || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("checksum mismatch", func(t *testing.T) {
		u := upload("/etc/f")
		node := fake.New(t,
			fake.Call{Line: nodeExec(u.Once(sum([]byte("x")), a644), true, limit(1)), Stdin: "x",
				Result: fake.Out(`{"err-data":"sha256 of the data written for /etc/f is 00, want 2d71\n","exitcode":1,"exited":1}`)},
			fake.Call{Line: nodeExec(u.Abort(""), false, 15), Result: fake.Out(`{"exitcode":1,"exited":1}`)},
		)
		err := newAgent(node).Put(context.Background(), "/etc/f", strings.NewReader("x"), a644)
		if err == nil || !strings.Contains(err.Error(), "sha256 of the data written for /etc/f is 00") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("cancelled mid-transfer: the upload is still removed", func(t *testing.T) {
		content := make([]byte, agent.MaxStdin+1)
		u := upload("/etc/f")
		node := fake.New(t,
			fake.Call{Line: nodeExec(u.Begin(), true, limit(agent.MaxStdin)), Stdin: string(content[:agent.MaxStdin]), Err: context.Canceled},
			fake.Call{Line: nodeExec(u.Abort(""), false, 15), Result: exited0},
		)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a := agent.New(cancelAfter{node, cancel}, "pve", 8101)
		a.Rand = zeros{}
		err := a.Put(ctx, "/etc/f", bytes.NewReader(content), transport.Attrs{Mode: 0o600})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("agent gone: no cleanup attempt, unavailability kept", func(t *testing.T) {
		node := fake.New(t,
			fake.Call{Line: nodeExec(upload("/etc/f").Once(sum([]byte("x")), a644), true, limit(1)), Stdin: "x",
				Result: fake.Fail(255, "QEMU guest agent is not running\n")},
		)
		err := newAgent(node).Put(context.Background(), "/etc/f", strings.NewReader("x"), a644)
		if !errors.Is(err, transport.ErrAgentUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestGet(t *testing.T) {
	node := fake.New(t, fake.Call{
		Line:   "pvesh get /nodes/pve/qemu/8101/agent/file-read --file /etc/hostname --output-format json",
		Result: fake.Out(`{"bytes-read":6,"content":"web\u00c3\u00a4\n"}` + "\n"),
	})
	var out bytes.Buffer
	if err := agent.New(node, "pve", 8101).Get(context.Background(), "/etc/hostname", &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "webä\n" {
		t.Fatalf("got %q", out.Bytes())
	}
}

func TestGetMissingFile(t *testing.T) {
	node := fake.New(t, fake.Call{
		Line:   "pvesh get /nodes/localhost/qemu/8101/agent/file-read --file /x --output-format json",
		Result: fake.Fail(255, "Agent error: failed to open file '/x' (mode: 'r'): No such file or directory\n"),
	})
	var out bytes.Buffer
	err := agent.New(node, "", 8101).Get(context.Background(), "/x", &out)
	if !errors.Is(err, fs.ErrNotExist) || out.Len() != 0 {
		t.Fatalf("err = %v, wrote %d bytes", err, out.Len())
	}
}

func TestGetBigFileThroughExec(t *testing.T) {
	content := make([]byte, 8<<20+10)
	for i := range content {
		content[i] = byte(i * 13)
	}
	chunk := func(b []byte) transport.Result {
		return fake.Out(`{"exitcode":0,"exited":1,"out-data":"` + base64.StdEncoding.EncodeToString(b) + `"}`)
	}
	node := fake.New(t,
		fake.Call{Line: "pvesh get /nodes/pve/qemu/8101/agent/file-read --file /var/big --output-format json",
			Result: fake.Out(`{"bytes-read":16777216,"content":"abc","truncated":1}`)},
		fake.Call{Line: nodeExec("dd if=/var/big bs=8388608 skip=0 count=1 iflag=fullblock status=none | base64 -w0", false, limit(8<<20)), Result: chunk(content[:8<<20])},
		fake.Call{Line: nodeExec("dd if=/var/big bs=8388608 skip=1 count=1 iflag=fullblock status=none | base64 -w0", false, limit(8<<20)), Result: chunk(content[8<<20:])},
		fake.Call{Line: nodeExec("sha256sum < /var/big", false, limit(len(content))), Result: fake.Out(`{"exitcode":0,"exited":1,"out-data":"` + sum(content) + `  -\n"}`)},
	)
	var out bytes.Buffer
	if err := agent.New(node, "pve", 8101).Get(context.Background(), "/var/big", &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), content) {
		t.Fatalf("got %d bytes, want %d", out.Len(), len(content))
	}
}

// overlapNode answers every command with a finished exec status and
// records how many ran at once.
type overlapNode struct {
	mu            sync.Mutex
	inFlight, max int
}

func (n *overlapNode) Run(context.Context, transport.Cmd) (transport.Result, error) {
	n.mu.Lock()
	n.inFlight++
	n.max = max(n.max, n.inFlight)
	n.mu.Unlock()
	time.Sleep(2 * time.Millisecond) // widen the window an overlap would need
	n.mu.Lock()
	n.inFlight--
	n.mu.Unlock()
	return fake.Out(`{"exitcode":0,"exited":1}`), nil
}

func TestOneNodeCommandAtATime(t *testing.T) {
	node := &overlapNode{}
	a := agent.New(node, "pve", 8101)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := a.Run(context.Background(), transport.Cmd{Line: "true"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if node.max != 1 {
		t.Fatalf("%d agent commands ran at once; qemu-ga serves one client at a time", node.max)
	}
	// A caller whose context ends while waiting for its turn gives up.
	started, hold := make(chan struct{}), make(chan struct{})
	busy := agent.New(blockingNode{started, hold}, "pve", 8101)
	done := make(chan struct{})
	go func() { busy.Run(context.Background(), transport.Cmd{Line: "long"}); close(done) }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := busy.Run(ctx, transport.Cmd{Line: "true"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(hold)
	<-done
}

// blockingNode signals started, then holds its command until hold closes.
type blockingNode struct{ started, hold chan struct{} }

func (n blockingNode) Run(context.Context, transport.Cmd) (transport.Result, error) {
	close(n.started)
	<-n.hold
	return fake.Out(`{"exitcode":0,"exited":1}`), nil
}

func TestName(t *testing.T) {
	if got := agent.New(nil, "pve", 8101).Name(); got != "agent vm 8101" {
		t.Fatalf("Name() = %q", got)
	}
}

// cancelAfter is a node that ends the caller's context once its first
// command has run, as a Ctrl-C during a transfer would.
type cancelAfter struct {
	transport.Runner
	cancel context.CancelFunc
}

func (c cancelAfter) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	defer c.cancel()
	return c.Runner.Run(ctx, cmd)
}
