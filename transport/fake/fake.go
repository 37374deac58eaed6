// Package fake is a strict recording transport for unit tests. Every command a
// test expects is declared up front, in order; an unexpected command fails the
// test, and so does an expectation never used. Tasks are tested against it to
// assert the exact command lines they generate.
package fake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
)

// Call is one expected command and the answer the fake gives.
type Call struct {
	Line   string
	Stdin  string // when non-empty, the stdin the command must receive
	Result transport.Result
	Err    error // returned as is; a non-zero ExitCode without Err becomes an *ExitError
}

// Transport records commands and files. Files put are kept in Files; files a
// test wants Get to find are placed there beforehand.
type Transport struct {
	t        testing.TB
	mu       sync.Mutex
	name     string
	expected []Call
	next     int
	Lines    []string                   // every command line run, in order
	Files    map[string][]byte          // the fake's filesystem
	Attrs    map[string]transport.Attrs // what each Put set
}

var _ transport.Transport = (*Transport)(nil)

// New returns a fake that fails t on any unexpected or unused call.
func New(t testing.TB, calls ...Call) *Transport {
	f := &Transport{t: t, name: "fake", expected: calls, Files: map[string][]byte{}, Attrs: map[string]transport.Attrs{}}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.expected[f.next:] {
			t.Errorf("fake %s: expected command never run: %s", f.name, c.Line)
		}
	})
	return f
}

// Named sets the name the fake reports.
func (f *Transport) Named(name string) *Transport { f.name = name; return f }

// Expect appends expected calls.
func (f *Transport) Expect(calls ...Call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expected = append(f.expected, calls...)
}

func (f *Transport) Name() string { return f.name }
func (f *Transport) Close() error { return nil }

func (f *Transport) Run(_ context.Context, cmd transport.Cmd) (transport.Result, error) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Lines = append(f.Lines, cmd.Line)
	if f.next >= len(f.expected) {
		f.t.Errorf("fake %s: unexpected command: %s", f.name, cmd.Line)
		return transport.Result{ExitCode: 127}, fmt.Errorf("fake: unexpected command %q", cmd.Line)
	}
	want := f.expected[f.next]
	if want.Line != cmd.Line {
		f.t.Errorf("fake %s: command %d:\n got: %s\nwant: %s", f.name, f.next+1, cmd.Line, want.Line)
		return transport.Result{ExitCode: 127}, fmt.Errorf("fake: unexpected command %q", cmd.Line)
	}
	f.next++
	if cmd.Stdin != nil {
		in, _ := io.ReadAll(cmd.Stdin)
		if want.Stdin != "" && string(in) != want.Stdin {
			f.t.Errorf("fake %s: stdin of %q:\n got: %q\nwant: %q", f.name, cmd.Line, in, want.Stdin)
		}
	} else if want.Stdin != "" {
		f.t.Errorf("fake %s: %q got no stdin, want %q", f.name, cmd.Line, want.Stdin)
	}
	res := want.Result
	if cmd.Stdout != nil {
		cmd.Stdout.Write(res.Stdout)
	}
	if cmd.Stderr != nil {
		cmd.Stderr.Write(res.Stderr)
	}
	if want.Err != nil {
		return res, want.Err
	}
	if res.ExitCode != 0 {
		return res, &transport.ExitError{Line: cmd.Printable(), Code: res.ExitCode, Stderr: res.Stderr, Stdout: res.Stdout}
	}
	return res, nil
}

func (f *Transport) Put(_ context.Context, path string, r io.Reader, a transport.Attrs) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Files[path] = b
	f.Attrs[path] = a
	return nil
}

func (f *Transport) Get(_ context.Context, path string, w io.Writer) error {
	f.mu.Lock()
	b, ok := f.Files[path]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("get %s: %w", path, fs.ErrNotExist)
	}
	_, err := io.Copy(w, bytes.NewReader(b))
	return err
}

// Out is a Result with the given stdout and exit code 0.
func Out(stdout string) transport.Result { return transport.Result{Stdout: []byte(stdout)} }

// Fail is a Result with the given stderr and exit code.
func Fail(code int, stderr string) transport.Result {
	return transport.Result{ExitCode: code, Stderr: []byte(stderr)}
}

// Batch is the Call that transport.Batch makes for lines, answered with one
// Result per line.
func Batch(lines []string, results ...transport.Result) Call {
	return Call{Line: transport.BatchScript(lines), Result: batchOutput(results)}
}

// BatchParallel is the Call that transport.BatchParallel makes for lines,
// answered with one Result per line.
func BatchParallel(lines []string, results ...transport.Result) Call {
	return Call{Line: transport.BatchParallelScript(lines), Result: batchOutput(results)}
}

func batchOutput(results []transport.Result) transport.Result {
	var out bytes.Buffer
	for _, r := range results {
		fmt.Fprintf(&out, "%d %d %d\n", r.ExitCode, len(r.Stdout), len(r.Stderr))
		out.Write(r.Stdout)
		out.Write(r.Stderr)
	}
	return transport.Result{Stdout: out.Bytes()}
}
