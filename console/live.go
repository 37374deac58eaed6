package console

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/muesli/termenv"

	"github.com/phoenix-hv/phoenix/runner"
)

// Options tune a Live view.
type Options struct {
	Verbose int // as runner.Text: -v adds live output and details, -vv commands
	// Interval between redraws of the running steps' timers; default 100ms.
	Interval time.Duration
	Now      func() time.Time // default time.Now
}

// Live is the runner.Observer for a terminal. Finished steps are printed
// once, coloured by status, cut to the terminal's width; below them, one
// line per running VM shows its step, the step's elapsed time and the last
// line of its output or log, redrawn every Interval; at the end a recap
// table replaces them. Close it when the run is over.
type Live struct {
	t        Terminal
	p        Palette
	verbose  int
	now      func() time.Time
	interval time.Duration

	mu       sync.Mutex
	buf      bytes.Buffer
	out      *termenv.Output // cursor movements, into buf
	drawn    int             // live lines now on the screen
	lastLive string          // what they say, to skip identical redraws
	playbook string
	start    time.Time
	order    []int // the run's VMs, in run order
	vms      map[int]*vmView
	ended    int
	finished bool // the summary came: no more live lines
	stop     chan struct{}
	ticking  sync.WaitGroup
}

// vmView is what the view knows of one VM.
type vmView struct {
	name    string
	running bool
	step    string
	since   time.Time // the step's start
	last    string    // last line of output or log in this step
	// for the recap
	end        *runner.Event
	failedStep string
}

// NewLive returns a live view on t.
func NewLive(t Terminal, o Options) *Live {
	l := &Live{t: t, p: Palette{t.Profile}, verbose: o.Verbose, now: o.Now, interval: o.Interval, vms: map[int]*vmView{}}
	if l.now == nil {
		l.now = time.Now
	}
	if l.interval <= 0 {
		l.interval = 100 * time.Millisecond
	}
	l.out = termenv.NewOutput(&l.buf, termenv.WithProfile(t.Profile))
	return l
}

func (l *Live) vm(id int) *vmView {
	v := l.vms[id]
	if v == nil {
		v = &vmView{}
		l.vms[id] = v
	}
	return v
}

// OnEvent prints what e adds and redraws the running steps.
func (l *Live) OnEvent(e runner.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return
	}
	width, _ := l.t.Size()
	var lines []string
	switch e.Type {
	case runner.EventRunStart:
		l.playbook, l.start, l.order = e.Playbook, l.now(), e.VMIDs
		lines = append(lines, l.p.Bold(Truncate(runner.RunTitle(e), width-1)))
		l.startTicking()
	case runner.EventVMStart:
		v := l.vm(e.VMID)
		v.name, v.running, v.since = e.VMName, true, l.now()
		if l.verbose >= 2 {
			lines = append(lines, l.p.Dim(Truncate(fmt.Sprintf("%d  vm %s", e.VMID, Clean(e.VMName)), width-1)))
		}
	case runner.EventTaskStart:
		v := l.vm(e.VMID)
		v.step, v.since, v.last = e.Task, l.now(), ""
	case runner.EventTaskEnd:
		v := l.vm(e.VMID)
		v.step, v.since, v.last = "", l.now(), ""
		if e.Status == runner.StatusFailed {
			v.failedStep = e.Task
		}
		lines = l.stepLines(e, width)
	case runner.EventLog:
		text := Clean(runner.LogText(e))
		l.vm(e.VMID).last = text
		lines = append(lines, l.p.Dim(Truncate(fmt.Sprintf("%d  | %s", e.VMID, text), width-1)))
	case runner.EventOutput:
		l.vm(e.VMID).last = Clean(e.Text)
		if l.verbose >= 1 { // asked for: kept whole
			lines = append(lines, l.p.Dim(fmt.Sprintf("%d  > %s", e.VMID, Clean(e.Text))))
		}
	case runner.EventVMEnd:
		v := l.vm(e.VMID)
		v.running, v.step = false, ""
		end := e
		v.end = &end
		l.ended++
	case runner.EventSummary:
		l.finish()
		lines = l.recap(e, width)
	}
	l.frame(lines)
}

// Close stops the redraws and takes the running steps off the screen if
// the run ended without its summary.
func (l *Live) Close() {
	l.mu.Lock()
	if !l.finished {
		l.finish()
		l.frame(nil)
	}
	l.mu.Unlock()
	l.ticking.Wait()
}

// finish ends the live lines: the next frame draws none.
func (l *Live) finish() {
	l.finished = true
	if l.stop != nil {
		close(l.stop)
	}
}

func (l *Live) startTicking() {
	l.stop = make(chan struct{})
	l.ticking.Add(1)
	go func() {
		defer l.ticking.Done()
		t := time.NewTicker(l.interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.tick()
			}
		}
	}()
}

// tick redraws the running steps (their timers move).
func (l *Live) tick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.finished {
		l.frame(nil)
	}
}

// frame takes the live lines off the screen, prints lines for good, and
// draws the live lines anew, in one write.
func (l *Live) frame(lines []string) {
	live := l.liveLines()
	joined := strings.Join(live, "\n")
	if len(lines) == 0 && joined == l.lastLive && l.drawn == len(live) {
		return
	}
	l.buf.Reset()
	if l.drawn > 0 {
		l.out.ClearLines(l.drawn) // the cursor sits under them, at column 0
	}
	for _, s := range append(lines, live...) {
		l.buf.WriteString(s)
		l.buf.WriteByte('\n')
	}
	l.drawn, l.lastLive = len(live), joined
	l.t.Out.Write(l.buf.Bytes())
}

// liveLines are the running VMs' lines and a footer, cut to the terminal.
func (l *Live) liveLines() []string {
	if l.finished || l.start.IsZero() {
		return nil
	}
	width, height := l.t.Size()
	now := l.now()
	var running []int
	stepWidth := 0
	for _, id := range l.order {
		if v := l.vms[id]; v != nil && v.running {
			running = append(running, id)
			stepWidth = max(stepWidth, Width(v.step))
		}
	}
	stepWidth = min(max(stepWidth, 1), 28)
	room := max(height-2, 1) // the footer, and the line the cursor is on
	var lines []string
	for i, id := range running {
		if i == room-1 && len(running) > room {
			lines = append(lines, l.p.Dim(fmt.Sprintf("… and %d more running", len(running)-i)))
			break
		}
		v := l.vms[id]
		step := v.step
		if step == "" {
			step = "…" // between steps
		}
		head := fmt.Sprintf("%d  %s  %6s", id, Pad(Truncate(step, stepWidth), stepWidth, false), runner.Seconds(now.Sub(v.since)))
		line := fit(width-1, piece{text: head, style: l.p.Warn}, piece{text: strings.TrimRight("  "+v.last, " "), style: l.p.Dim})
		lines = append(lines, line)
	}
	footer := fmt.Sprintf("%s: %d of %d VMs done, %d running, %s", l.playbook, l.ended, len(l.order), len(running), runner.Seconds(now.Sub(l.start)))
	return append(lines, l.p.Dim(Truncate(footer, width-1)))
}

// stepLines are a finished step's line, cut to the width, and the blocks
// under it.
func (l *Live) stepLines(e runner.Event, width int) []string {
	word := runner.StatusWord(e)
	meta := ""
	if e.Transport != "" {
		meta = fmt.Sprintf(" %-5s %6s", e.Transport, runner.Seconds(e.Duration))
	}
	msgLines := BlockLines(runner.StepMessage(e))
	first := ""
	if len(msgLines) > 0 {
		first = "  " + msgLines[0]
	}
	var msgStyle func(string) string
	switch e.Status {
	case runner.StatusFailed:
		msgStyle = l.p.Bad
	case runner.StatusSkipped:
		msgStyle = l.p.Dim
	}
	// The step column gives way on a narrow terminal, so the status stays.
	col := min(max(width-1-34-16, 8), 28)
	pieces := []piece{
		{text: fmt.Sprintf("%d  %s ", e.VMID, Pad(Truncate(e.Task, col), col, false))},
		{text: Pad(word, 14, false), style: func(s string) string { return l.p.Status(word, s) }},
		{text: meta, style: l.p.Dim},
		{text: first, style: msgStyle},
	}
	lines := []string{strings.TrimRight(fit(width-1, pieces...), " ")}
	// A failure is read in full: when it did not fit, it goes under the line.
	var plain strings.Builder
	for _, p := range pieces {
		plain.WriteString(p.text)
	}
	if e.Status == runner.StatusFailed && (Width(plain.String()) > width-1 || len(msgLines) > 1) {
		for _, m := range msgLines {
			lines = append(lines, runner.Indent+m)
		}
	}
	b := runner.StepBlocks(e, l.verbose)
	for _, d := range BlockLines(b.Diff) {
		lines = append(lines, l.p.DiffLine(runner.Indent+d))
	}
	for _, d := range BlockLines(b.Details) {
		lines = append(lines, runner.Indent+d)
	}
	for _, c := range b.Commands {
		lines = append(lines, l.p.Dim(runner.Indent+"$ "+Clean(c)))
	}
	return lines
}

// BlockLines splits text into lines, each cleaned for the terminal.
func BlockLines(text string) []string {
	lines := runner.BlockLines(text)
	for i, s := range lines {
		lines[i] = Clean(s)
	}
	return lines
}

// recap is the table that ends a run: one row per VM and the totals.
func (l *Live) recap(sum runner.Event, width int) []string {
	t := Table{
		Header: []string{"VMID", "NAME", "RESULT", "OK", "CHANGED", "FAILED", "SKIPPED", "TIME", "NOTE"},
		Right:  []bool{false, false, false, true, true, true, true, true},
	}
	num := func(n int) Cell { return Cell{Text: fmt.Sprint(n)} }
	for _, id := range l.order {
		v := l.vms[id]
		if v == nil || v.end == nil {
			continue
		}
		e := v.end
		result, note := "ok", ""
		switch {
		case e.Status == runner.StatusFailed:
			result = "failed"
			note = Clean(firstLine(e.Error))
			if v.failedStep != "" {
				note = "at " + v.failedStep
			}
		case e.Counts.Changed > 0 && sum.DryRun:
			result = "would change"
		case e.Counts.Changed > 0:
			result = "changed"
		}
		t.Rows = append(t.Rows, []Cell{
			{Text: fmt.Sprint(id)}, {Text: Clean(v.name)},
			{Text: result, Style: func(s string) string { return l.p.Status(result, s) }},
			num(e.Counts.OK), num(e.Counts.Changed), num(e.Counts.Failed), num(e.Counts.Skipped),
			{Text: runner.Seconds(e.Duration)}, {Text: note, Style: l.p.Dim},
		})
	}
	c := sum.Counts
	t.Rows = append(t.Rows, []Cell{
		{Text: "total", Style: l.p.Bold}, {}, {}, num(c.OK), num(c.Changed), num(c.Failed), num(c.Skipped),
		{Text: runner.Seconds(sum.Duration)}, {Text: strings.TrimPrefix(runner.SummaryNote(sum), "; "), Style: l.p.Dim},
	})
	return append([]string{""}, t.Lines(l.p, width)...)
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
