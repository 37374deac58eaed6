package runner

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
)

// EventType names what happened.
type EventType string

const (
	EventRunStart  EventType = "run_start"
	EventVMStart   EventType = "vm_start"
	EventTaskStart EventType = "task_start"
	EventTaskEnd   EventType = "task_end"
	EventLog       EventType = "log"
	EventOutput    EventType = "output"
	EventVMEnd     EventType = "vm_end"
	EventSummary   EventType = "summary"
	EventError     EventType = "error"
)

// Status is how a step (or a VM) ended.
type Status string

const (
	StatusOK      Status = "ok"
	StatusChanged Status = "changed" // applied, or pending in a dry run
	StatusSkipped Status = "skipped"
	StatusFailed  Status = "failed"
)

// Event is one thing a person or a program may want to follow. Which fields
// are set depends on Type; nothing secret is ever in an event.
type Event struct {
	Type     EventType
	Playbook string // run_start
	VMIDs    []int  // run_start
	Forks    int    // run_start
	DryRun   bool   // run_start, task_end, summary
	VMID     int
	VMName   string // vm_start
	Task     string
	Kind     string
	Status   Status
	Change   tasks.Change // task_end: action, summary, diff, commands, details
	// Transport is the channel a step used: "node", "agent" or "ssh".
	Transport string
	Duration  time.Duration
	Error     string
	Stream    string // output: "stdout"
	Text      string // log, output
	Counts    Counts // vm_end, summary
	FailedVMs []int  // summary
	// FailedNodes are the nodes the run could not reach or lost (summary).
	FailedNodes []string
	// Interrupted: the run was cancelled (Ctrl-C) before it ended (summary).
	Interrupted bool
}

// Observer receives the events of a run. The runner serialises the calls,
// so an implementation need not lock.
type Observer interface {
	OnEvent(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

func (f ObserverFunc) OnEvent(e Event) { f(e) }

// serial makes an Observer safe for VMs running in parallel.
type serial struct {
	mu sync.Mutex
	o  Observer
}

func (s *serial) OnEvent(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.o.OnEvent(e)
}

// MarshalJSON writes the event as one JSON object whose keys depend on its
// type (docs/ARCHITECTURE.md "Events"), "event" first.
func (e Event) MarshalJSON() ([]byte, error) {
	o := object{{"event", e.Type}}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	switch e.Type {
	case EventRunStart:
		o = append(o, kv{"playbook", e.Playbook}, kv{"vms", e.VMIDs}, kv{"forks", e.Forks}, kv{"dry_run", e.DryRun})
	case EventVMStart:
		o = append(o, kv{"vmid", e.VMID}, kv{"name", e.VMName})
	case EventTaskStart:
		o = append(o, kv{"vmid", e.VMID}, kv{"task", e.Task}, kv{"kind", e.Kind})
	case EventTaskEnd:
		o = append(o, kv{"vmid", e.VMID}, kv{"task", e.Task}, kv{"kind", e.Kind}, kv{"status", e.Status},
			kv{"changed", e.Status == StatusChanged})
		if e.Change.Action != "" {
			o = append(o, kv{"action", e.Change.Action})
		}
		o = append(o, kv{"summary", e.Change.Summary})
		o = o.optional("diff", e.Change.Diff).optional("details", e.Change.Details)
		if len(e.Change.Commands) > 0 {
			o = append(o, kv{"commands", e.Change.Commands})
		}
		o = append(o, kv{"transport", e.Transport}, kv{"duration_ms", ms(e.Duration)})
		o = o.optional("error", e.Error)
		if e.DryRun {
			o = append(o, kv{"dry_run", true})
		}
	case EventLog:
		o = append(o, kv{"vmid", e.VMID})
		o = o.optional("task", e.Task)
		o = append(o, kv{"text", e.Text})
	case EventOutput:
		o = append(o, kv{"vmid", e.VMID}, kv{"task", e.Task}, kv{"stream", e.Stream}, kv{"text", e.Text})
	case EventVMEnd:
		o = append(o, kv{"vmid", e.VMID}, kv{"status", e.Status})
		o = append(o, e.Counts.fields()...)
		o = append(o, kv{"duration_ms", ms(e.Duration)})
		o = o.optional("error", e.Error)
	case EventSummary:
		o = append(o, e.Counts.fields()...)
		o = append(o, kv{"duration_ms", ms(e.Duration)})
		if len(e.FailedVMs) > 0 {
			o = append(o, kv{"failed_vms", e.FailedVMs})
		}
		if len(e.FailedNodes) > 0 {
			o = append(o, kv{"failed_nodes", e.FailedNodes})
		}
		if e.DryRun {
			o = append(o, kv{"dry_run", true})
		}
		if e.Interrupted {
			o = append(o, kv{"interrupted", true})
		}
	case EventError:
		o = append(o, kv{"error", e.Error})
	}
	return o.MarshalJSON()
}

func (c Counts) fields() []kv {
	return []kv{{"ok", c.OK}, {"changed", c.Changed}, {"failed", c.Failed}, {"skipped", c.Skipped}}
}

// object is a JSON object that keeps its key order.
type object []kv

type kv struct {
	k string
	v any
}

func (o object) optional(k, v string) object {
	if v == "" {
		return o
	}
	return append(o, kv{k, v})
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := compact(&b, f.k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := compact(&b, f.v); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// compact writes v as JSON without HTML escaping, so diffs stay readable.
func compact(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}
