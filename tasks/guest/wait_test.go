package guest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

func TestGuestWait(t *testing.T) {
	tests := []struct {
		name        string
		status      string
		params      map[string]any
		guestErr    error
		wantAction  tasks.Action
		wantSummary string
		wantErr     string
		wantWait    time.Duration // the deadline given to env.Guest, about
	}{
		{name: "answers", status: "running", params: map[string]any{"timeout_seconds": 120},
			wantAction: tasks.None, wantSummary: "guest answers over agent vm 8101", wantWait: 120 * time.Second},
		{name: "default is the agent timeout", status: "running", params: map[string]any{},
			wantAction: tasks.None, wantSummary: "guest answers over agent vm 8101", wantWait: 300 * time.Second},
		{name: "no answer", status: "running", params: map[string]any{"timeout_seconds": 5},
			guestErr: transport.ErrAgentUnavailable, wantErr: "guest agent unavailable"},
		{name: "nothing answers: what to look at", status: "running", params: map[string]any{"timeout_seconds": 5},
			guestErr: transport.ErrUnreachable, wantErr: transport.ErrUnreachable.Error() + " (" + unreachableHint + ")"},
		{name: "stopped", status: "stopped", params: map[string]any{"timeout_seconds": 5},
			wantAction: tasks.Unknown, wantSummary: "will wait up to 5s for the guest"},
		{name: "missing", status: "", params: map[string]any{},
			wantAction: tasks.Unknown, wantSummary: "will wait up to 5m0s for the guest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.status = tt.status
			asked := false
			w.env.Guest = func(ctx context.Context) (tasks.Guest, error) {
				asked = true
				dl, ok := ctx.Deadline()
				if left := time.Until(dl); tt.wantWait > 0 && (!ok || left > tt.wantWait || left < tt.wantWait-time.Minute) {
					t.Errorf("waited with %v left, want about %v", left, tt.wantWait)
				}
				if tt.guestErr != nil {
					return nil, tt.guestErr
				}
				return w.guest, nil
			}
			c, err := w.task("guest_wait", tt.params).Check(context.Background(), w.env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, tt.guestErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Action != tt.wantAction || c.Summary != tt.wantSummary {
				t.Errorf("got %s %q, want %s %q", c.Action, c.Summary, tt.wantAction, tt.wantSummary)
			}
			if asked != (tt.status == "running") {
				t.Errorf("guest asked: %v", asked)
			}
		})
	}
}

// Apply of the Unknown plan waits now, after the start.
func TestGuestWaitApplyUnknown(t *testing.T) {
	w := newWorld(t)
	w.status = "stopped"
	task := w.task("guest_wait", map[string]any{})
	c := w.check(task)
	w.env.Guest = func(context.Context) (tasks.Guest, error) { return nil, errors.New("still booting") }
	if err := w.apply(task, c); err == nil || !strings.Contains(err.Error(), "still booting") {
		t.Errorf("apply: %v", err)
	}
}
