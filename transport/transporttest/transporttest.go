// Package transporttest is the conformance suite every transport.Transport
// must pass: exit codes and stderr, exact output bytes, stdin, cancellation,
// atomic file transfers with modes, and hostile file names. The target must
// have a POSIX shell with mktemp, stat -c, cat, ls and rm (any Linux host).
package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// wait bounds every step of the suite: generous, so only a hang fails it.
const wait = 60 * time.Second

// Run runs the suite. newT returns a fresh, working transport for one
// subtest; Run closes it when the subtest ends.
func Run(t *testing.T, newT func(t *testing.T) transport.Transport) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"Name", testName},
		{"ExitCodeAndStderr", testExitCodeAndStderr},
		{"SecretsRedactedInExitError", testSecretsRedacted},
		{"StdoutExactBytes", testStdoutExactBytes},
		{"LiveOutput", testLiveOutput},
		{"Stdin", testStdin},
		{"StdinNotRead", testStdinNotRead},
		{"CancelReturnsPromptly", testCancel},
		{"TimeoutReturnsPromptly", testTimeout},
		{"ConcurrentRuns", testConcurrentRuns},
		{"PutGetRoundTrip", testPutGetRoundTrip},
		{"PutMode", testPutMode},
		{"PutReplacesAtomically", testPutReplaces},
		{"FailedPutKeepsOldFile", testFailedPut},
		{"GetMissingFile", testGetMissing},
		{"PutIntoMissingDirectory", testPutMissingDir},
		{"HostileNames", testHostileNames},
		{"PutNeverFollowsSymlinks", testPutNoFollow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newT(t)
			t.Cleanup(func() {
				if err := tr.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, &suite{t: t, tr: tr})
		})
	}
}

type suite struct {
	t   *testing.T
	tr  transport.Transport
	dir string
}

func (s *suite) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	s.t.Cleanup(cancel)
	return ctx
}

// run runs line and fails the test on any error.
func (s *suite) run(line string) transport.Result {
	s.t.Helper()
	res, err := s.tr.Run(s.ctx(), transport.Cmd{Line: line})
	if err != nil {
		s.t.Fatalf("Run(%q): %v", line, err)
	}
	return res
}

// scratch is a fresh directory on the target, removed after the test.
func (s *suite) scratch() string {
	s.t.Helper()
	if s.dir == "" {
		out := s.run("mktemp -d")
		s.dir = strings.TrimSpace(string(out.Stdout))
		if !strings.HasPrefix(s.dir, "/") {
			s.t.Fatalf("mktemp -d printed %q", out.Stdout)
		}
		s.t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			s.tr.Run(ctx, transport.Cmd{Line: transport.Command("rm", "-rf", s.dir)})
		})
	}
	return s.dir
}

// entries lists the scratch directory, hidden files included.
func (s *suite) entries() []string {
	s.t.Helper()
	out := s.run("cd " + transport.Quote(s.scratch()) + " && for f in * .*; do [ -e \"$f\" ] && [ \"$f\" != . ] && [ \"$f\" != .. ] && printf '%s\\0' \"$f\"; done; true")
	names := strings.Split(strings.TrimSuffix(string(out.Stdout), "\x00"), "\x00")
	if len(names) == 1 && names[0] == "" {
		return nil
	}
	slices.Sort(names)
	return names
}

func (s *suite) put(p string, data []byte, mode fs.FileMode) {
	s.t.Helper()
	if err := s.tr.Put(s.ctx(), p, bytes.NewReader(data), transport.Attrs{Mode: mode}); err != nil {
		s.t.Fatalf("Put(%q): %v", p, err)
	}
}

func (s *suite) get(p string) []byte {
	s.t.Helper()
	var b bytes.Buffer
	if err := s.tr.Get(s.ctx(), p, &b); err != nil {
		s.t.Fatalf("Get(%q): %v", p, err)
	}
	return b.Bytes()
}

func testName(t *testing.T, s *suite) {
	if s.tr.Name() == "" {
		t.Error("Name() is empty")
	}
}

func testExitCodeAndStderr(t *testing.T, s *suite) {
	for _, tc := range []struct {
		line           string
		code           int
		stdout, stderr string
	}{
		{"echo out; echo oops >&2; exit 3", 3, "out\n", "oops\n"},
		{"exit 1", 1, "", ""},
		{"echo 'no such thing' >&2; exit 127", 127, "", "no such thing\n"},
		{"exit 255", 255, "", ""},
	} {
		res, err := s.tr.Run(s.ctx(), transport.Cmd{Line: tc.line})
		var ee *transport.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("Run(%q) error = %v, want *transport.ExitError", tc.line, err)
			continue
		}
		if ee.Code != tc.code || res.ExitCode != tc.code || transport.ExitCode(err) != tc.code {
			t.Errorf("Run(%q): ExitError.Code %d, Result.ExitCode %d, want %d", tc.line, ee.Code, res.ExitCode, tc.code)
		}
		if string(ee.Stderr) != tc.stderr || string(res.Stderr) != tc.stderr {
			t.Errorf("Run(%q): stderr %q (in error %q), want %q", tc.line, res.Stderr, ee.Stderr, tc.stderr)
		}
		if string(res.Stdout) != tc.stdout {
			t.Errorf("Run(%q): stdout %q, want %q", tc.line, res.Stdout, tc.stdout)
		}
		if ee.Line != tc.line {
			t.Errorf("Run(%q): ExitError.Line = %q", tc.line, ee.Line)
		}
		if tc.stderr != "" && !strings.Contains(err.Error(), strings.TrimSpace(tc.stderr)) {
			t.Errorf("Run(%q): error %q does not show stderr", tc.line, err)
		}
	}
	if res := s.run("true"); res.ExitCode != 0 {
		t.Errorf("true: ExitCode %d", res.ExitCode)
	}
}

func testSecretsRedacted(t *testing.T, s *suite) {
	secret := "s3cret pw"
	cmd := transport.Cmd{Line: transport.Command("test", secret, "=", "other"), Secrets: []string{secret}}
	_, err := s.tr.Run(s.ctx(), cmd)
	var ee *transport.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("error = %v, want *transport.ExitError", err)
	}
	if ee.Line != cmd.Printable() || strings.Contains(err.Error(), secret) {
		t.Errorf("the secret leaks: Line %q, error %q", ee.Line, err)
	}
}

func testStdoutExactBytes(t *testing.T, s *suite) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000/16)
	for _, tc := range []struct {
		name, line string
		want       []byte
	}{
		{"no trailing newline", "printf x", []byte("x")},
		{"empty", "true", nil},
		{"every byte value", "printf '" + octal(all) + "'", all},
		{"blank lines kept", "printf '\\n\\nz\\n\\n'", []byte("\n\nz\n\n")},
		{"300 kB", "i=0; while [ $i -lt 18750 ]; do printf 0123456789abcdef; i=$((i+1)); done", big},
	} {
		res := s.run(tc.line)
		if !bytes.Equal(res.Stdout, tc.want) {
			t.Errorf("%s: stdout has %d bytes %q, want %d bytes %q", tc.name, len(res.Stdout), clip(res.Stdout), len(tc.want), clip(tc.want))
		}
		if len(res.Stderr) != 0 {
			t.Errorf("%s: stderr %q", tc.name, res.Stderr)
		}
	}
}

func testLiveOutput(t *testing.T, s *suite) {
	var out, errb bytes.Buffer
	res, err := s.tr.Run(s.ctx(), transport.Cmd{Line: "echo one; echo two >&2; echo three", Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\nthree\n" || errb.String() != "two\n" {
		t.Errorf("live copies: stdout %q stderr %q", out.String(), errb.String())
	}
	if string(res.Stdout) != out.String() || string(res.Stderr) != errb.String() {
		t.Errorf("Result %q/%q differs from the live copies", res.Stdout, res.Stderr)
	}
}

func testStdin(t *testing.T, s *suite) {
	bin := randomBytes(64<<10, 1)
	for _, tc := range []struct {
		name, line string
		in         []byte
		want       string
	}{
		{"cat binary", "cat", bin, string(bin)},
		{"count", "wc -c", bin, fmt.Sprintf("%d", len(bin))},
		{"empty", "wc -c", []byte{}, "0"},
		{"no newline", "read -r l; printf '%s' \"$l\"", []byte("last line"), "last line"},
	} {
		res, err := s.tr.Run(s.ctx(), transport.Cmd{Line: tc.line, Stdin: bytes.NewReader(tc.in)})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := string(res.Stdout)
		if tc.line == "wc -c" {
			got = strings.TrimSpace(got)
		}
		if got != tc.want {
			t.Errorf("%s: stdout %q, want %q", tc.name, clip([]byte(got)), clip([]byte(tc.want)))
		}
	}
	// Without Stdin a command reading stdin must see EOF, not hang.
	if res := s.run("cat; echo done"); string(res.Stdout) != "done\n" {
		t.Errorf("cat without stdin: %q", res.Stdout)
	}
}

func testStdinNotRead(t *testing.T, s *suite) {
	res, err := s.tr.Run(s.ctx(), transport.Cmd{Line: "echo ignored", Stdin: bytes.NewReader(randomBytes(64<<10, 2))})
	if err != nil || string(res.Stdout) != "ignored\n" {
		t.Errorf("a command that does not read its stdin: %q, %v", res.Stdout, err)
	}
}

// runBounded runs cmd and fails the test when Run does not come back within
// wait: a transport must return once ctx ends, not when the command would.
func (s *suite) runBounded(ctx context.Context, cmd transport.Cmd) error {
	s.t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := s.tr.Run(ctx, cmd)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		s.t.Fatalf("Run(%q) still running %s after its context ended", cmd.Line, wait)
		return nil
	}
}

func testCancel(t *testing.T, s *suite) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err := s.runBounded(ctx, transport.Cmd{Line: "sleep 300"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	// The transport is still usable afterwards.
	if res := s.run("echo ok"); string(res.Stdout) != "ok\n" {
		t.Errorf("after a cancelled command: %q", res.Stdout)
	}
}

func testTimeout(t *testing.T, s *suite) {
	err := s.runBounded(context.Background(), transport.Cmd{Line: "sleep 300", Timeout: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want context.DeadlineExceeded", err)
	}
	if transport.ExitCode(err) != -1 {
		t.Errorf("a killed command is not an ExitError: %v", err)
	}
}

func testConcurrentRuns(t *testing.T, s *suite) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	outs := make([]string, n)
	for i := range n {
		wg.Go(func() {
			res, err := s.tr.Run(s.ctx(), transport.Cmd{Line: fmt.Sprintf("echo %d; echo e%d >&2", i, i)})
			errs[i], outs[i] = err, string(res.Stdout)+string(res.Stderr)
		})
	}
	wg.Wait()
	for i := range n {
		if want := fmt.Sprintf("%d\ne%d\n", i, i); errs[i] != nil || outs[i] != want {
			t.Errorf("command %d: %q, %v; want %q", i, outs[i], errs[i], want)
		}
	}
}

func testPutGetRoundTrip(t *testing.T, s *suite) {
	dir := s.scratch()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", []byte{}},
		{"text", []byte("hello\nworld\n")},
		{"no newline", []byte("x")},
		{"binary 3 MiB", randomBytes(3<<20, 3)},
	} {
		p := path.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
		s.put(p, tc.data, 0o644)
		if got := s.get(p); !bytes.Equal(got, tc.data) {
			t.Errorf("%s: Get returned %d bytes, want %d (equal: false)", tc.name, len(got), len(tc.data))
		}
		// What the target's own tools see, not just what Get says.
		if out := strings.TrimSpace(string(s.run("wc -c <" + transport.Quote(p)).Stdout)); out != fmt.Sprint(len(tc.data)) {
			t.Errorf("%s: wc -c on the target says %s bytes, want %d", tc.name, out, len(tc.data))
		}
	}
}

func testPutMode(t *testing.T, s *suite) {
	dir := s.scratch()
	for _, mode := range []fs.FileMode{0o600, 0o644, 0o640, 0o755, 0o700, 0o444} {
		p := path.Join(dir, fmt.Sprintf("m%o", mode))
		s.put(p, []byte("x"), mode)
		got := strings.TrimSpace(string(s.run("stat -c %a " + transport.Quote(p)).Stdout))
		if got != fmt.Sprintf("%o", mode) {
			t.Errorf("Put mode %o: stat says %s", mode, got)
		}
	}
	// Replacing a file applies the new mode, not the old one.
	p := path.Join(dir, "replaced")
	s.put(p, []byte("old"), 0o644)
	s.put(p, []byte("new"), 0o600)
	if got := strings.TrimSpace(string(s.run("stat -c %a " + transport.Quote(p)).Stdout)); got != "600" {
		t.Errorf("mode after replacing a 644 file with 600: %s", got)
	}
}

func testPutReplaces(t *testing.T, s *suite) {
	dir := s.scratch()
	p := path.Join(dir, "conf")
	s.put(p, []byte("old content, longer than the new one\n"), 0o644)
	s.put(p, []byte("new\n"), 0o644)
	if got := string(s.get(p)); got != "new\n" {
		t.Errorf("after replace: %q", got)
	}
	if got := s.entries(); !slices.Equal(got, []string{"conf"}) {
		t.Errorf("directory holds %q, want only conf (no temp files left)", got)
	}
}

func testFailedPut(t *testing.T, s *suite) {
	dir := s.scratch()
	p := path.Join(dir, "conf")
	s.put(p, []byte("old\n"), 0o644)
	broken := io.MultiReader(bytes.NewReader(randomBytes(200<<10, 4)), errReader{})
	if err := s.tr.Put(s.ctx(), p, broken, transport.Attrs{Mode: 0o600}); err == nil {
		t.Fatal("Put from a failing reader returned no error")
	}
	if got := string(s.get(p)); got != "old\n" {
		t.Errorf("a failed Put changed the file: %q", clip([]byte(got)))
	}
	if got := s.entries(); !slices.Equal(got, []string{"conf"}) {
		t.Errorf("directory holds %q after a failed Put, want only conf", got)
	}
	// Into a directory that does not exist: an error, nothing created.
	if err := s.tr.Put(s.ctx(), path.Join(dir, "missing", "f"), strings.NewReader("x"), transport.Attrs{Mode: 0o644}); err == nil {
		t.Error("Put into a missing directory returned no error")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source broke") }

func testGetMissing(t *testing.T, s *suite) {
	var b bytes.Buffer
	err := s.tr.Get(s.ctx(), path.Join(s.scratch(), "does-not-exist"), &b)
	if err == nil {
		t.Fatal("Get of a missing file returned no error")
	}
	if b.Len() != 0 {
		t.Errorf("Get of a missing file wrote %q", b.String())
	}
}

// A Put whose directory does not exist fails as fs.ErrNotExist on every
// transport, so a task can tell "create the directory first" from a failure.
func testPutMissingDir(t *testing.T, s *suite) {
	err := s.tr.Put(s.ctx(), path.Join(s.scratch(), "no", "such", "file"), strings.NewReader("x"), transport.Attrs{Mode: 0o644})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Put into a missing directory: %v, want fs.ErrNotExist", err)
	}
}

// A user who can write the destination's directory plants symlinks at the
// destination and at the fixed temp name phoenix once used, pointing at a
// file it must not be able to change: Put replaces the symlink at the
// destination with a regular file and never writes, chmods or chowns
// through either.
func testPutNoFollow(t *testing.T, s *suite) {
	dir := s.scratch()
	canary, drop := path.Join(dir, "canary"), path.Join(dir, "drop")
	dest := path.Join(drop, "app.conf")
	s.run("mkdir " + transport.Quote(drop) + " && printf secret > " + transport.Quote(canary) + " && chmod 600 " + transport.Quote(canary) +
		" && ln -s " + transport.Quote(canary) + " " + transport.Quote(dest) +
		" && ln -s " + transport.Quote(canary) + " " + transport.Quote(path.Join(drop, ".app.conf.phoenix-tmp")))
	for _, size := range []int{5, 3 << 20} { // one command, and chunks where the transport has them
		data := randomBytes(size, uint64(size))
		s.put(dest, data, 0o644)
		if got := s.get(dest); !bytes.Equal(got, data) {
			t.Errorf("%d bytes: Get returned %d bytes", size, len(got))
		}
		if got := strings.TrimSpace(string(s.run("stat -c '%F %a' " + transport.Quote(dest)).Stdout)); got != "regular file 644" {
			t.Errorf("%d bytes: destination is %q, want a regular file with mode 644", size, got)
		}
		if got := strings.TrimSpace(string(s.run("cat " + transport.Quote(canary) + "; echo; stat -c %a " + transport.Quote(canary)).Stdout)); got != "secret\n600" {
			t.Errorf("%d bytes: the symlinks' target now holds/has %q", size, clip([]byte(got)))
		}
	}
	if got := strings.TrimSpace(string(s.run("ls -A " + transport.Quote(drop)).Stdout)); got != ".app.conf.phoenix-tmp\napp.conf" {
		t.Errorf("directory holds %q, want only the planted temp-name symlink and the destination", got)
	}
}

func testHostileNames(t *testing.T, s *suite) {
	dir := s.scratch()
	names := []string{
		"with space",
		"it's",
		`double"quote`,
		"$(touch pwned)",
		"`touch pwned`",
		"semi;colon&amp",
		"-dash",
		"star*",
		"new\nline",
		"back\\slash",
		"ünïcødé",
	}
	for i, name := range names {
		p := path.Join(dir, name)
		content := []byte(fmt.Sprintf("file %d\n", i))
		s.put(p, content, 0o644)
		if got := s.get(p); !bytes.Equal(got, content) {
			t.Errorf("%q: Get %q", name, got)
		}
		if got := s.run("cat " + transport.Quote(p)).Stdout; !bytes.Equal(got, content) {
			t.Errorf("%q: cat through Quote: %q", name, got)
		}
		if got := s.run("printf '%s' " + transport.Quote(name)).Stdout; string(got) != name {
			t.Errorf("printf through Quote of %q gave %q", name, got)
		}
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if got := s.entries(); !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want exactly %q (nothing executed, nothing left)", got, want)
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// octal renders b as printf escapes.
func octal(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "\\%03o", c)
	}
	return sb.String()
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}
