package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/agent"
	"github.com/phoenix-hv/phoenix/transport/transporttest"
)

func TestSimulatedRun(t *testing.T) {
	a := agent.New(newSimNode(t), "pve", 8101)
	for _, tc := range []struct {
		name     string
		line     string
		stdin    []byte
		stdout   string
		stderr   string
		exitCode int
	}{
		{name: "streams and exit status", line: "echo out; echo err >&2; exit 3", stdout: "out\n", stderr: "err\n", exitCode: 3},
		{name: "login environment", line: `printf '%s|%s|%s' "$HOME" "$LANG" "$PATH"`, stdout: "/root|C.UTF-8|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		{name: "quoting survives two shells", line: transport.Command("printf", "%s", `it's "$(x)" \ ; * `+"`y`"), stdout: `it's "$(x)" \ ; * ` + "`y`"},
		{name: "non-ASCII and binary bytes", line: `printf 'ä\000\377'`, stdout: "ä\x00\xff"},
		{name: "stdin, binary", line: "cat; printf end", stdin: []byte("a\x00b\xffc\n"), stdout: "a\x00b\xffc\nend"},
		{name: "empty stdin", line: "wc -c", stdin: []byte{}, stdout: "0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := transport.Cmd{Line: tc.line, Timeout: 30 * time.Second}
			if tc.stdin != nil {
				cmd.Stdin = bytes.NewReader(tc.stdin)
			}
			res, err := a.Run(context.Background(), cmd)
			if transport.ExitCode(err) != tc.exitCode {
				t.Fatalf("err = %v, want exit %d", err, tc.exitCode)
			}
			if string(res.Stdout) != tc.stdout || string(res.Stderr) != tc.stderr || res.ExitCode != tc.exitCode {
				t.Fatalf("result = %q / %q / %d, want %q / %q / %d", res.Stdout, res.Stderr, res.ExitCode, tc.stdout, tc.stderr, tc.exitCode)
			}
		})
	}
}

func TestSimulatedTimeout(t *testing.T) {
	a := agent.New(newSimNode(t), "pve", 8101)
	_, err := a.Run(context.Background(), transport.Cmd{Line: "sleep 3", Timeout: time.Second})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still running after 1s") {
		t.Fatalf("err = %v", err)
	}
}

func TestSimulatedFiles(t *testing.T) {
	a := agent.New(newSimNode(t), "pve", 8101)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		size int
		mode fs.FileMode
	}{
		{name: "empty", size: 0, mode: 0o600},
		{name: "small", size: 1000, mode: 0o644},
		{name: "largest single round trip", size: agent.MaxStdin, mode: 0o640},
		{name: "one byte over: chunks", size: agent.MaxStdin + 1, mode: 0o755},
		{name: "several MiB", size: 3<<20 + 17, mode: 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := make([]byte, tc.size)
			for i := range content {
				content[i] = byte(i*31 + i/251)
			}
			path := filepath.Join(dir, "a file "+tc.name)
			if err := os.WriteFile(path, []byte("old"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := a.Put(context.Background(), path, bytes.NewReader(content), transport.Attrs{Mode: tc.mode}); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.mode {
				t.Errorf("mode %o, want %o", st.Mode().Perm(), tc.mode)
			}
			var got bytes.Buffer
			if err := a.Get(context.Background(), path, &got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), content) {
				t.Fatalf("read back %d bytes, want the %d put", got.Len(), len(content))
			}
		})
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*phoenix-tmp"))
	if len(left) > 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestSimulatedGetPastTheReadCap(t *testing.T) {
	node := newSimNode(t)
	node.fault(t, "read-cap", "1000") // as if the file were over 16 MiB
	a := agent.New(node, "pve", 8101)
	for _, size := range []int{5000, 8<<20 + 3} {
		content := bytes.Repeat([]byte("0123456789\xfe"), size/11+1)[:size]
		path := filepath.Join(t.TempDir(), "big")
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := a.Get(context.Background(), path, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), content) {
			t.Fatalf("size %d: read %d bytes", size, got.Len())
		}
	}
}

func TestSimulatedErrors(t *testing.T) {
	node := newSimNode(t)
	a := agent.New(node, "pve", 8101)
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "no", "such")
	if err := a.Get(ctx, missing, &bytes.Buffer{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get of a missing file: %v", err)
	}
	if err := a.Put(ctx, missing, strings.NewReader("x"), transport.Attrs{Mode: 0o644}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Put into a missing directory: %v", err)
	}
	if err := a.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}

	node.fault(t, "agent-off", "")
	for name, err := range map[string]error{
		"ping": a.Ping(ctx),
		"run":  func() error { _, err := a.Run(ctx, transport.Cmd{Line: "true"}); return err }(),
		"put":  a.Put(ctx, filepath.Join(t.TempDir(), "f"), strings.NewReader("x"), transport.Attrs{Mode: 0o644}),
		"get":  a.Get(ctx, "/etc/hostname", &bytes.Buffer{}),
	} {
		if !errors.Is(err, transport.ErrAgentUnavailable) || !strings.Contains(err.Error(), "QEMU guest agent is not running") {
			t.Errorf("%s with the agent off: %v", name, err)
		}
	}
}

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transport.Transport { return agent.New(newSimNode(t), "pve", 8101) })
}
