package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/phoenix-hv/phoenix/console"
	"github.com/phoenix-hv/phoenix/runner"
)

// ptyOutput runs phoenix with stdout on a pseudo-terminal and returns the
// exit code and what the terminal received.
func ptyOutput(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	got := make(chan string)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, ptmx) // ends with EIO when tty is closed
		got <- b.String()
	}()
	code := Main(args, tty, io.Discard)
	tty.Close()
	return code, <-got
}

// pipeOutput runs phoenix with stdout on a pipe, as `phoenix … | less`.
func pipeOutput(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	code := Main(args, w, io.Discard)
	w.Close()
	return code, <-got
}

func TestObserverFollowsTheOutput(t *testing.T) {
	t.Setenv("TERM", "xterm-256color")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	for _, tc := range []struct {
		name   string
		stdout io.Writer
		output string
		want   string
	}{
		{"terminal", tty, "text", "*console.Live"},
		{"terminal, json", tty, "json", "runner.JSONLines"},
		{"buffer", &bytes.Buffer{}, "text", "*runner.Text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &App{Globals: Globals{Output: tc.output}, Stdout: tc.stdout}
			o, done := a.observer()
			defer done()
			var got string
			switch o.(type) {
			case *console.Live:
				got = "*console.Live"
			case runner.JSONLines:
				got = "runner.JSONLines"
			case *runner.Text:
				got = "*runner.Text"
			}
			if got != tc.want {
				t.Errorf("observer %T, want %s", o, tc.want)
			}
		})
	}
}

// A run on a terminal ends with the recap table, in colour; the same run
// piped prints the plain lines, without any escape sequence; NO_COLOR and
// --no-color keep the live view but drop the colours.
func TestRunOutputOnTerminalAndPipe(t *testing.T) {
	t.Setenv("TERM", "xterm-256color")
	args := append(files(t, testConfig), "create", "8101") // the node refuses: a quick failed run
	code, out := ptyOutput(t, args...)
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{"VMID", "RESULT", "8101", "node pve1: ", "\x1b[1m", "\x1b[2K"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}
	code, out = pipeOutput(t, args...)
	if code != 1 || strings.Contains(out, "\x1b") || !strings.Contains(out, "8101: ok=0 changed=0 failed=1 skipped=0") {
		t.Errorf("piped: exit %d, output:\n%q", code, out)
	}
	for _, noColor := range [][]string{{"--no-color"}, nil} {
		if noColor == nil {
			t.Setenv("NO_COLOR", "1")
		}
		_, out = ptyOutput(t, append(noColor, args...)...)
		if strings.Contains(out, "\x1b[1m") || !strings.Contains(out, "RESULT") {
			t.Errorf("with %v NO_COLOR=%q: %q", noColor, os.Getenv("NO_COLOR"), out)
		}
	}
}
