package console

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/muesli/termenv"

	"github.com/phoenix-hv/phoenix/runner"
	"github.com/phoenix-hv/phoenix/tasks"
)

// env is an environment for Detect.
type env map[string]string

func (e env) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}
func (e env) Getenv(k string) string { return e[k] }

// openPTY returns a pseudo-terminal of cols×24 cells: the terminal end for
// the view, and everything written to it as the terminal received it,
// once close is called.
func openPTY(t *testing.T, cols int) (tty *os.File, received func() string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: uint16(cols)}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return // EIO once the terminal end is closed
			}
		}
	}()
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return tty, func() string {
		tty.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

func TestDetect(t *testing.T) {
	tty, _ := openPTY(t, 70)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	colour := env{"TERM": "xterm-256color", "CI": "true"}
	for _, tc := range []struct {
		name    string
		out     io.Writer
		env     env
		noColor bool
		live    bool
		profile termenv.Profile
	}{
		{"terminal", tty, colour, false, true, termenv.ANSI256},
		{"NO_COLOR", tty, env{"TERM": "xterm-256color", "NO_COLOR": "yes"}, false, true, termenv.Ascii},
		{"--no-color", tty, colour, true, true, termenv.Ascii},
		{"dumb terminal", tty, env{"TERM": "dumb"}, false, false, 0},
		{"pipe", w, colour, false, false, 0},
		{"buffer", &bytes.Buffer{}, colour, false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			term, ok := Detect(tc.out, tc.env, tc.noColor)
			if ok != tc.live {
				t.Fatalf("live %v, want %v", ok, tc.live)
			}
			if ok && term.Profile != tc.profile {
				t.Errorf("profile %v, want %v", term.Profile, tc.profile)
			}
			if ok {
				if w, h := term.Size(); w != 70 || h != 24 {
					t.Errorf("size %dx%d, want the terminal's 70x24", w, h)
				}
			}
		})
	}
}

// TestLiveOnAPseudoTerminal runs a view on a real pseudo-terminal through
// a 2.5 s step that prints a line every 100 ms: while the step runs, the
// terminal shows it with its timer moving and its last line of output;
// then its result line, coloured, and the recap.
func TestLiveOnAPseudoTerminal(t *testing.T) {
	tty, received := openPTY(t, 70)
	term, ok := Detect(tty, env{"TERM": "xterm-256color"}, false)
	if !ok {
		t.Fatal("a pseudo-terminal is not detected as a terminal")
	}
	l := NewLive(term, Options{Interval: 100 * time.Millisecond})
	l.OnEvent(runner.Event{Type: runner.EventRunStart, Playbook: "create", VMIDs: []int{8101}, Forks: 5})
	l.OnEvent(runner.Event{Type: runner.EventVMStart, VMID: 8101, VMName: "web01"})
	l.OnEvent(runner.Event{Type: runner.EventTaskStart, VMID: 8101, Task: "feature slow", Kind: "feature"})
	start := time.Now()
	for i := 1; i <= 25; i++ {
		time.Sleep(100 * time.Millisecond)
		l.OnEvent(runner.Event{Type: runner.EventOutput, VMID: 8101, Task: "feature slow", Stream: "stdout", Text: fmt.Sprintf("unpacking part %d of 25", i)})
	}
	took := time.Since(start)
	l.OnEvent(runner.Event{Type: runner.EventTaskEnd, VMID: 8101, Task: "feature slow", Kind: "feature", Status: runner.StatusChanged,
		Transport: "agent", Duration: took, Change: tasks.Change{Action: tasks.Run, Summary: "ran feature slow"}})
	l.OnEvent(runner.Event{Type: runner.EventVMEnd, VMID: 8101, Status: runner.StatusOK, Counts: runner.Counts{Changed: 1}, Duration: took})
	l.OnEvent(runner.Event{Type: runner.EventSummary, Counts: runner.Counts{Changed: 1}, Duration: took})
	l.Close()
	out := received()

	if !strings.Contains(out, "\x1b[2K") || !strings.Contains(out, "\x1b[1A") {
		t.Error("no cursor movement: the running step was not redrawn in place")
	}
	if !strings.Contains(out, "\x1b[33m") || !strings.Contains(out, "\x1b[1m") {
		t.Errorf("no colours on a colour terminal: %q", out)
	}
	plain := regexp.MustCompile("\x1b\\[[0-9;]*[mKA]").ReplaceAllString(out, "")
	result := regexp.MustCompile(`8101  feature slow\s+changed\s+agent`).FindStringIndex(plain)
	if result == nil {
		t.Fatalf("no result line for the step in:\n%s", plain)
	}
	end := result[0]
	// Before its result line, the step was on screen with a moving timer
	// and the latest line of its output.
	running := regexp.MustCompile(`8101  feature slow\s+(\d+\.\d)s  unpacking part (\d+) of 25`).FindAllStringSubmatch(plain[:end], -1)
	timers := map[string]bool{}
	var last float64
	for _, m := range running {
		timers[m[1]] = true
		last, _ = strconv.ParseFloat(m[1], 64)
	}
	if len(timers) < 5 || last < 2.5 {
		t.Errorf("while the step ran the terminal showed the timers %v (last %.1fs), want it counting up to 2.5s:\n%s", timers, last, plain[:end])
	}
	if m := running[len(running)-1]; m[2] != "25" {
		t.Errorf("last output shown: part %s, want the latest, 25", m[2])
	}
	if !regexp.MustCompile(`VMID\s+NAME\s+RESULT.*\r?\n8101\s+web01\s+changed\s+0\s+1\s+0\s+0`).MatchString(plain[end:]) {
		t.Errorf("no recap table after the step:\n%s", plain[end:])
	}
	for _, line := range strings.Split(strings.ReplaceAll(plain, "\r", ""), "\n") {
		if Width(line) >= 70 {
			t.Errorf("line of %d cells on a 70-cell terminal: %q", Width(line), line)
		}
	}
}
