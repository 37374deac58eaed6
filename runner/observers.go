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

// Text writes what a person follows when the output is not a terminal: one
// line per step with its status, channel, duration and summary; the blocks
// of StepBlocks under it; a line per VM and totals. (A terminal gets the
// live view of package console, built from the same pieces.)
type Text struct {
	W       io.Writer
	Verbose int

	// reported holds the VMs whose failure a step line already showed.
	reported map[int]bool
}

// Indent is how far blocks (diffs, details, commands) sit under their step.
const Indent = "      "

func (t *Text) OnEvent(e Event) {
	switch e.Type {
	case EventRunStart:
		fmt.Fprintln(t.W, RunTitle(e))
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
		fmt.Fprintf(t.W, "%d  | %s\n", e.VMID, LogText(e))
	case EventOutput:
		if t.Verbose >= 1 {
			fmt.Fprintf(t.W, "%d  > %s\n", e.VMID, e.Text)
		}
	case EventVMEnd:
		line := fmt.Sprintf("%d: %s", e.VMID, counts(e.Counts))
		if e.Duration > 0 {
			line += fmt.Sprintf(" (%s)", Seconds(e.Duration))
		}
		if e.Error != "" && !t.reported[e.VMID] {
			line += ": " + e.Error // failed before any step (node, dependency): say why here
		}
		fmt.Fprintln(t.W, line)
	case EventSummary:
		fmt.Fprintf(t.W, "total: %s in %s%s\n", counts(e.Counts), Seconds(e.Duration), SummaryNote(e))
	}
}

func (t *Text) taskEnd(e Event) {
	if e.Status == StatusFailed {
		if t.reported == nil {
			t.reported = map[int]bool{}
		}
		t.reported[e.VMID] = true
	}
	line := fmt.Sprintf("%d  %-28s %-14s", e.VMID, e.Task, StatusWord(e))
	if e.Transport != "" {
		line += fmt.Sprintf(" %-5s %6s", e.Transport, Seconds(e.Duration))
	}
	if m := StepMessage(e); m != "" {
		line += "  " + m
	}
	fmt.Fprintln(t.W, strings.TrimRight(line, " "))
	b := StepBlocks(e, t.Verbose)
	for _, text := range []string{b.Diff, b.Details} {
		for _, l := range BlockLines(text) {
			fmt.Fprintln(t.W, strings.TrimRight(Indent+l, " "))
		}
	}
	for _, c := range b.Commands {
		fmt.Fprintf(t.W, "%s$ %s\n", Indent, c)
	}
}

// RunTitle is the first line of a run: "create on vm 8101, 8102", and what
// a dry run means.
func RunTitle(e Event) string {
	mode := ""
	if e.DryRun {
		mode = " (dry run: nothing is changed)"
	}
	return fmt.Sprintf("%s on %s%s", e.Playbook, vmList(e.VMIDs), mode)
}

// SummaryNote ends the totals: what a dry run means ("; dry run: 3 to
// change, …") and whether the run was interrupted.
func SummaryNote(e Event) string {
	note := ""
	if e.DryRun {
		note = fmt.Sprintf("; dry run: %d to change, nothing was changed", e.Counts.Changed)
	}
	if len(e.FailedNodes) > 0 {
		note += fmt.Sprintf("; failed node: %s (its VMs failed, the others went on)", strings.Join(e.FailedNodes, ", "))
	}
	if e.Interrupted {
		note += "; interrupted: steps were stopped, run again to finish"
	}
	return note
}

// LogText is a log event's text under its VM's number: without the
// "vm 8101: " the transports start their lines with, which the line's
// prefix says already.
func LogText(e Event) string {
	return strings.TrimPrefix(e.Text, fmt.Sprintf("vm %d: ", e.VMID))
}

// StatusWord is a task_end's status as a person reads it: in a dry run a
// change reads "would create" (or "pending" when it depends on an earlier
// change), otherwise the status itself.
func StatusWord(e Event) string {
	switch {
	case !e.DryRun || e.Status != StatusChanged:
		return string(e.Status)
	case e.Change.Action == tasks.Unknown:
		return "pending" // known once an earlier change is applied
	}
	return "would " + string(e.Change.Action)
}

// StepMessage is the text after a step's status: its error, else its
// summary.
func StepMessage(e Event) string {
	if e.Error != "" {
		return e.Error
	}
	return e.Change.Summary
}

// Blocks is what is shown under a step line.
type Blocks struct {
	Diff     string   // present with --diff
	Details  string   // with -v, and always when the step failed
	Commands []string // the planned commands: -vv, or -v in a dry run
}

// StepBlocks picks the blocks of a task_end event for the verbosity.
func StepBlocks(e Event, verbose int) Blocks {
	b := Blocks{Diff: e.Change.Diff}
	if verbose >= 1 || e.Status == StatusFailed {
		b.Details = e.Change.Details
	}
	if verbose >= 2 || verbose >= 1 && e.DryRun && e.Status == StatusChanged {
		b.Commands = e.Change.Commands
	}
	return b
}

// BlockLines splits a block's text into its lines ("" gives none).
func BlockLines(text string) []string {
	if text == "" {
		return nil
	}
	return strings.Split(strings.TrimRight(text, "\n"), "\n")
}

func counts(c Counts) string {
	return fmt.Sprintf("ok=%d changed=%d failed=%d skipped=%d", c.OK, c.Changed, c.Failed, c.Skipped)
}

// Seconds formats a duration as people read step times: "2.3s".
func Seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func vmList(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return "vm " + strings.Join(s, ", ")
}
