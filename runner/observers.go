package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
)

// JSONLines writes every event as one JSON object per line
// (`--output json`); the last line is the summary.
type JSONLines struct {
	W io.Writer
}

func (j JSONLines) OnEvent(e Event) {
	b, err := json.Marshal(e)
	if err != nil {
		b, _ = json.Marshal(Event{Type: EventError, Error: "event: " + err.Error()})
	}
	j.W.Write(append(b, '\n'))
}

// Text writes what a person follows: one line per step with its status,
// channel, duration and summary; diffs (present with Options.Diff), details and live output
// (Verbose ≥ 1, details also when a step fails), planned commands (dry run
// with Verbose ≥ 1, always with Verbose ≥ 2); a line per VM and totals.
type Text struct {
	W       io.Writer
	Verbose int

	dryRun bool
	// reported holds the VMs whose failure a step line already showed.
	reported map[int]bool
}

const indent = "      "

func (t *Text) OnEvent(e Event) {
	switch e.Type {
	case EventRunStart:
		t.dryRun = e.DryRun
		mode := ""
		if e.DryRun {
			mode = " (dry run: nothing is changed)"
		}
		fmt.Fprintf(t.W, "%s on %s%s\n", e.Playbook, vmList(e.VMIDs), mode)
	case EventVMStart:
		if t.Verbose >= 2 {
			fmt.Fprintf(t.W, "%d  vm %s\n", e.VMID, e.VMName)
		}
	case EventTaskStart:
		if t.Verbose >= 1 {
			fmt.Fprintf(t.W, "%d  %s …\n", e.VMID, e.Task)
		}
	case EventTaskEnd:
		t.taskEnd(e)
	case EventLog:
		fmt.Fprintf(t.W, "%d  | %s\n", e.VMID, e.Text)
	case EventOutput:
		if t.Verbose >= 1 {
			fmt.Fprintf(t.W, "%d  > %s\n", e.VMID, e.Text)
		}
	case EventVMEnd:
		line := fmt.Sprintf("%d: %s", e.VMID, counts(e.Counts))
		if e.Duration > 0 {
			line += fmt.Sprintf(" (%s)", seconds(e.Duration))
		}
		if e.Error != "" && !t.reported[e.VMID] {
			line += ": " + e.Error // failed before any step (node, dependency): say why here
		}
		fmt.Fprintln(t.W, line)
	case EventSummary:
		line := fmt.Sprintf("total: %s in %s", counts(e.Counts), seconds(e.Duration))
		if e.DryRun {
			line += fmt.Sprintf("; dry run: %d to change, nothing was changed", e.Counts.Changed)
		}
		fmt.Fprintln(t.W, line)
	}
}

func (t *Text) taskEnd(e Event) {
	if e.Status == StatusFailed {
		if t.reported == nil {
			t.reported = map[int]bool{}
		}
		t.reported[e.VMID] = true
	}
	status := string(e.Status)
	switch {
	case !t.dryRun || e.Status != StatusChanged:
	case e.Change.Action == tasks.Unknown:
		status = "pending" // known once an earlier change is applied
	default:
		status = "would " + string(e.Change.Action)
	}
	line := fmt.Sprintf("%d  %-28s %-14s", e.VMID, e.Task, status)
	if e.Transport != "" {
		line += fmt.Sprintf(" %-5s %6s", e.Transport, seconds(e.Duration))
	}
	switch {
	case e.Error != "":
		line += "  " + e.Error
	case e.Change.Summary != "":
		line += "  " + e.Change.Summary
	}
	fmt.Fprintln(t.W, strings.TrimRight(line, " "))
	if e.Change.Diff != "" {
		block(t.W, e.Change.Diff)
	}
	if e.Change.Details != "" && (t.Verbose >= 1 || e.Status == StatusFailed) {
		block(t.W, e.Change.Details)
	}
	if len(e.Change.Commands) > 0 && (t.Verbose >= 2 || t.Verbose >= 1 && t.dryRun && e.Status == StatusChanged) {
		for _, c := range e.Change.Commands {
			fmt.Fprintf(t.W, "%s$ %s\n", indent, c)
		}
	}
}

// block writes text indented under its step.
func block(w io.Writer, text string) {
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintln(w, strings.TrimRight(indent+l, " "))
	}
}

func counts(c Counts) string {
	return fmt.Sprintf("ok=%d changed=%d failed=%d skipped=%d", c.OK, c.Changed, c.Failed, c.Skipped)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func vmList(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return "vm " + strings.Join(s, ", ")
}
