package guest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// unreachableHint is what to look at when a guest answers on no channel.
const unreachableHint = "the guest needs qemu-guest-agent running (phoenix sets agent: enabled=1), " +
	"or SSH reachable from here (guest.via in the inventory): see the VM's console; agent_timeout_seconds sets the wait"

// waitGuest is guest_wait: it waits until the guest answers and says over
// which channel. It changes nothing.
type waitGuest struct {
	d       deps
	Timeout int `json:"timeout_seconds"`
}

func newWait(d deps, params map[string]any) (tasks.Task, error) {
	t := &waitGuest{d: d}
	if err := tasks.Decode(params, t); err != nil {
		return nil, err
	}
	return t, nil
}

// timeout is timeout_seconds, else the VM's agent timeout.
func (t *waitGuest) timeout(env *tasks.Env) time.Duration {
	return seconds(t.Timeout, env.VM.AgentTimeout())
}

func (t *waitGuest) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		return notYet(fmt.Sprintf("will wait up to %s for the guest", t.timeout(env)), "waited for the guest"), nil
	}
	return t.wait(ctx, env)
}

func (t *waitGuest) wait(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	timeout := t.timeout(env)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	g, err := env.Guest(ctx)
	if errors.Is(err, transport.ErrUnreachable) {
		return tasks.Change{}, fmt.Errorf("%w (%s)", err, unreachableHint)
	}
	if err != nil {
		return tasks.Change{}, err // the chooser says what it tried and for how long
	}
	return tasks.Change{Action: tasks.None, Summary: "guest answers over " + g.Name()}, nil
}

// Apply runs only for a guest that could not answer at Check time: it waits now.
func (t *waitGuest) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	_, err := replan(ctx, env, c, t.wait)
	return err
}
