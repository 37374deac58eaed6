package pve

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
)

type startParams struct{}

// startTask starts a stopped VM.
type startTask struct{ qm }

func newStart(q qm, _ startParams) (tasks.Task, error) { return &startTask{qm: q}, nil }

func (t *startTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	switch {
	case !st.Exists:
		return missing(env, fmt.Sprintf("vm %d does not exist yet; will start it", vmid))
	case st.Template():
		return tasks.Change{}, fmt.Errorf("vm %d is a template: templates cannot be started", vmid)
	case st.Status == "running":
		return none("vm %d is running", vmid), nil
	case st.Status != "stopped":
		return tasks.Change{}, fmt.Errorf("vm %d is %s: phoenix only starts stopped VMs", vmid, st.Status)
	}
	c := call{argv: qmArgs("start", vmid), timeout: qmTimeout, done: IsAlreadyRunning}
	return planned(tasks.Update, fmt.Sprintf("will start vm %d (stopped)", vmid), fmt.Sprintf("started vm %d", vmid), "", c), nil
}

type stopParams struct {
	TimeoutSeconds *int `json:"timeout_seconds"` // default 60
	Force          bool `json:"force"`           // hard stop, no shutdown
}

// stopTask shuts a VM down, and stops it hard when the guest does not
// power off in time.
type stopTask struct {
	qm
	p       stopParams
	timeout int
}

func newStop(q qm, p stopParams) (tasks.Task, error) {
	timeout := 60
	if p.TimeoutSeconds != nil {
		timeout = *p.TimeoutSeconds
	}
	if timeout <= 0 {
		return nil, errors.New("parameters: timeout_seconds: must be positive")
	}
	return &stopTask{qm: q, p: p, timeout: timeout}, nil
}

func (t *stopTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	switch {
	case !st.Exists:
		return none("vm %d does not exist", vmid), nil
	case st.Status == "stopped":
		return none("vm %d is stopped", vmid), nil
	}
	stop := hardStop(vmid)
	// A paused VM refuses a shutdown.
	if t.p.Force || st.Status == "paused" {
		return planned(tasks.Update, fmt.Sprintf("will stop vm %d (%s; hard stop)", vmid, st.Status), fmt.Sprintf("stopped vm %d (hard stop)", vmid), "", stop), nil
	}
	shutdown := shutdownCall(vmid, t.timeout)
	will := fmt.Sprintf("will shut down vm %d (%s), waiting %ds; qm stop only if that times out", vmid, st.Status, t.timeout)
	// A stop after a timed-out shutdown is logged when it happens.
	return planned(tasks.Update, will, fmt.Sprintf("stopped vm %d", vmid), "", shutdown), nil
}

// shutdownCall is `qm shutdown` waiting up to seconds, with `qm stop` when
// that times out.
func shutdownCall(vmid, seconds int) call {
	stop := hardStop(vmid)
	return call{
		argv:     qmArgs("shutdown", vmid, "--timeout", fmt.Sprint(seconds)),
		timeout:  time.Duration(seconds)*time.Second + time.Minute,
		fallback: &stop,
		escalate: IsShutdownTimeout,
	}
}

// hardStop is `qm stop`: quit, then SIGTERM and SIGKILL (qm waits up to 70 s).
func hardStop(vmid int) call {
	return call{argv: qmArgs("stop", vmid), timeout: qmTimeout}
}
