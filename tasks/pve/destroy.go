package pve

import (
	"context"
	"fmt"
	"strings"

	"github.com/phoenix-hv/phoenix/tasks"
)

type destroyParams struct {
	Purge *bool `json:"purge"` // default true: also drop it from backup jobs, HA, replication
}

// destroyTask removes the VM and its disks. A VM that still runs (the
// graceful vm_stop before it did not stop it) is stopped hard first: qm
// refuses to destroy a running VM.
type destroyTask struct {
	qm
	purge bool
}

func newDestroy(q qm, p destroyParams) (tasks.Task, error) {
	return &destroyTask{qm: q, purge: p.Purge == nil || *p.Purge}, nil
}

func (t *destroyTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !st.Exists {
		return none("vm %d does not exist", vmid), nil
	}
	// Gone already means done: a second run, or a destroy racing this one.
	destroy := call{argv: qmArgs("destroy", vmid, "--purge", boolWord(t.purge)), timeout: qmTimeout, done: IsNotExist}
	var calls []call
	what := fmt.Sprintf("vm %d %s(%s)", vmid, nameWord(st.Config["name"]), st.Status)
	will, did := "will destroy "+what, "destroyed "+what
	if st.Status != "stopped" {
		stop := hardStop(vmid)
		stop.done = IsNotExist
		calls = append(calls, stop)
		will, did = will+", stopping it hard first with qm stop", did+", stopped hard first"
	}
	calls = append(calls, destroy)
	diff := strings.TrimSpace(fmt.Sprintf("- vm %d %s", vmid, nameWord(st.Config["name"]))) + "\n"
	if len(st.Snapshots) > 0 {
		diff += "- snapshots: " + strings.Join(st.Snapshots, ", ") + "\n"
	}
	return planned(tasks.Delete, will, did, diff, calls...), nil
}
