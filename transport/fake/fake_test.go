package fake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// recorder stands in for the *testing.T of a task test, so the fake's own
// failures can be seen instead of failing this test.
type recorder struct {
	testing.TB // nil: the fake uses only the methods below
	errs       []string
	cleanups   []func()
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// end runs the cleanups as the end of a test would and returns every
// failure the fake reported.
func (r *recorder) end() []string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return r.errs
}

func TestStrictness(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		expected []fake.Call
		run      []transport.Cmd
		wantErrs []string // substrings of the fake's failures, in order; none = clean
	}{
		{
			name:     "every expected command run in order",
			expected: []fake.Call{{Line: "qm status 8101"}, {Line: "qm config 8101"}},
			run:      []transport.Cmd{{Line: "qm status 8101"}, {Line: "qm config 8101"}},
		},
		{
			name:     "a command nobody expected",
			expected: []fake.Call{{Line: "qm status 8101"}},
			run:      []transport.Cmd{{Line: "qm status 8101"}, {Line: "qm start 8101"}},
			wantErrs: []string{"unexpected command: qm start 8101"},
		},
		{
			name:     "another command than the next expected one",
			expected: []fake.Call{{Line: "qm status 8101"}},
			run:      []transport.Cmd{{Line: "qm stop 8101"}},
			wantErrs: []string{"command 1:\n got: qm stop 8101\nwant: qm status 8101", "expected command never run: qm status 8101"},
		},
		{
			name:     "an expected command never run",
			expected: []fake.Call{{Line: "qm status 8101"}, {Line: "qm start 8101"}},
			run:      []transport.Cmd{{Line: "qm status 8101"}},
			wantErrs: []string{"expected command never run: qm start 8101"},
		},
		{
			name:     "stdin differs",
			expected: []fake.Call{{Line: "cat > /x", Stdin: "want"}},
			run:      []transport.Cmd{{Line: "cat > /x", Stdin: strings.NewReader("got")}},
			wantErrs: []string{`stdin of "cat > /x":` + "\n" + ` got: "got"` + "\nwant: \"want\""},
		},
		{
			name:     "stdin expected, none given",
			expected: []fake.Call{{Line: "cat > /x", Stdin: "want"}},
			run:      []transport.Cmd{{Line: "cat > /x"}},
			wantErrs: []string{`"cat > /x" got no stdin, want "want"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			f := fake.New(rec, tc.expected...)
			for _, c := range tc.run {
				f.Run(ctx, c)
			}
			got := rec.end()
			if len(got) != len(tc.wantErrs) {
				t.Fatalf("fake reported %d failures, want %d: %q", len(got), len(tc.wantErrs), got)
			}
			for i, want := range tc.wantErrs {
				if !strings.Contains(got[i], want) {
					t.Errorf("failure %d = %q, want it to contain %q", i+1, got[i], want)
				}
			}
			var lines []string
			for _, c := range tc.run {
				lines = append(lines, c.Line)
			}
			if strings.Join(f.Lines, "\n") != strings.Join(lines, "\n") {
				t.Errorf("Lines = %q, want every line run: %q", f.Lines, lines)
			}
		})
	}
}

func TestAnswers(t *testing.T) {
	ctx := context.Background()
	broken := fmt.Errorf("ssh root@pve: %w", transport.ErrDisconnected)
	var live bytes.Buffer
	f := fake.New(t,
		fake.Call{Line: "echo hi", Result: fake.Out("hi\n")},
		fake.Call{Line: "qm set 8101 --cipassword s3cret", Result: fake.Fail(255, "VM is locked (backup)\n")},
		fake.Call{Line: "qm status 8101", Err: broken},
	)
	res, err := f.Run(ctx, transport.Cmd{Line: "echo hi", Stdout: &live})
	if err != nil || string(res.Stdout) != "hi\n" || live.String() != "hi\n" {
		t.Errorf("echo hi = %q (live %q), %v", res.Stdout, live.String(), err)
	}
	res, err = f.Run(ctx, transport.Cmd{Line: "qm set 8101 --cipassword s3cret", Secrets: []string{"s3cret"}})
	var ee *transport.ExitError
	if !errors.As(err, &ee) || ee.Code != 255 || res.ExitCode != 255 || string(ee.Stderr) != "VM is locked (backup)\n" {
		t.Errorf("a non-zero exit: %+v, %v; want an *ExitError with code and stderr", res, err)
	}
	if err != nil && strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the secret: %v", err)
	}
	if _, err := f.Run(ctx, transport.Cmd{Line: "qm status 8101"}); err != broken {
		t.Errorf("Err = %v, want it returned as is", err)
	}
}

func TestBatchMatchesTransportBatch(t *testing.T) {
	lines := []string{"qm config 8101", "qm status 8101", "qm listsnapshot 8101"}
	want := []transport.Result{
		fake.Out("cores: 2\n"),
		fake.Out("status: running\n"),
		fake.Fail(2, "Configuration file 'nodes/pve/qemu-server/8101.conf' does not exist\n"),
	}
	f := fake.New(t, fake.Batch(lines, want...))
	got, err := transport.Batch(context.Background(), f, lines)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if string(got[i].Stdout) != string(want[i].Stdout) || string(got[i].Stderr) != string(want[i].Stderr) || got[i].ExitCode != want[i].ExitCode {
			t.Errorf("result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestFiles(t *testing.T) {
	ctx := context.Background()
	f := fake.New(t)
	if err := f.Put(ctx, "/etc/motd", strings.NewReader("hello\n"), transport.Attrs{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	if string(f.Files["/etc/motd"]) != "hello\n" || f.Attrs["/etc/motd"].Mode != 0o640 {
		t.Errorf("after Put: %q mode %o", f.Files["/etc/motd"], f.Attrs["/etc/motd"].Mode)
	}
	var b bytes.Buffer
	if err := f.Get(ctx, "/etc/motd", &b); err != nil || b.String() != "hello\n" {
		t.Errorf("Get = %q, %v", b.String(), err)
	}
	if err := f.Get(ctx, "/nope", &b); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get of a missing file: %v, want fs.ErrNotExist", err)
	}
}
