package pve

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

type placeParams struct {
	// TimeoutSeconds is how long a running VM may take to shut down before
	// it moves (then it is stopped); default 120.
	TimeoutSeconds *int `json:"timeout_seconds"`
}

// placeTask checks that the VM lives on the node the config places it on
// (its home) and, when allowed (--migrate), moves it there: offline, as qm
// migrate moves a stopped VM with its local disks (pve-more.md §3.7).
type placeTask struct {
	qm
	timeout int
}

func newPlace(q qm, p placeParams) (tasks.Task, error) {
	timeout := 120
	if p.TimeoutSeconds != nil {
		timeout = *p.TimeoutSeconds
	}
	if timeout <= 0 {
		return nil, errors.New("parameters: timeout_seconds: must be positive")
	}
	return &placeTask{qm: q, timeout: timeout}, nil
}

func (t *placeTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	if env.Cluster == nil {
		return none("node %s, as the config says (it has no cluster vm list to check)", env.NodeName), nil
	}
	loc, err := env.Cluster.Locate(ctx, vmid)
	switch {
	case err != nil:
		return tasks.Change{}, err
	case !loc.Exists:
		return none("vm %d does not exist yet; it goes on node %s", vmid, env.Home), nil
	case loc.Node == env.Home:
		return none("vm %d is on node %s", vmid, env.Home), nil
	case loc.Node == "":
		// The runner refuses a VM on a node the inventory lacks; a change
		// since (another run moved it) is refused here.
		return tasks.Change{}, fmt.Errorf("vm %d lives on node %s, which the inventory does not list", vmid, loc.PVENode)
	}
	drift := fmt.Sprintf("vm %d lives on node %s, the config places it on %s", vmid, loc.Node, env.Home)
	if !env.Migrate {
		if env.DryRun {
			return tasks.Change{Action: tasks.Update, Summary: drift + "; --migrate moves it (offline)",
				Diff: fmt.Sprintf("-node: %s\n+node: %s\n", loc.Node, env.Home)}, nil
		}
		return tasks.Change{}, fmt.Errorf("%s: run again with --migrate to move it (offline: shut down, moved, started again), or set its node to %s in the config", drift, loc.Node)
	}
	target := env.Cluster.PVEName(env.Home)
	if target == "" {
		return tasks.Change{}, fmt.Errorf("%s, which is not in the cluster of node %s: a VM moves only within its cluster", drift, loc.Node)
	}
	st, err := ReadState(ctx, env) // env.Node is where it lives
	if err != nil {
		return tasks.Change{}, err
	}
	migrate := call{argv: qmArgs("migrate", vmid, target), timeout: cloneTimeout,
		explain: func(err error) error { return migrateError(err, vmid, loc.Node, env.Home) }}
	calls, how := []call{migrate}, "offline"
	switch st.Status {
	case "stopped":
	case "paused":
		calls, how = []call{hardStop(vmid), migrate}, "stopped hard (paused), then moved offline"
	default:
		calls, how = []call{shutdownCall(vmid, t.timeout), migrate}, fmt.Sprintf("shut down (qm stop after %ds), then moved offline", t.timeout)
	}
	c := planned(tasks.Update, fmt.Sprintf("will move vm %d from node %s to %s (%s)", vmid, loc.Node, env.Home, how),
		fmt.Sprintf("moved vm %d from node %s to %s", vmid, loc.Node, env.Home),
		fmt.Sprintf("-node: %s\n+node: %s\n", loc.Node, env.Home), calls...)
	c.MovesTo = env.Home
	return c, nil
}

// reMigrateClone is qm migrate's refusal of a linked clone or a template
// with linked clones on local storage (pve-more.md §3.7).
var reMigrateClone = regexp.MustCompile(`can't migrate '[^']*' as it's a clone of '[^']*'|referenced by linked clone\(s\)`)

// migrateError says why Proxmox would not move the VM, when it is one of
// the rules a person can act on: the task log (qm's stdout) says which,
// stderr only "migration aborted".
func migrateError(err error, vmid int, from, to string) error {
	var ee *transport.ExitError
	log := ""
	if errors.As(err, &ee) {
		log = string(ee.Stdout) + string(ee.Stderr)
	}
	if m := reMigrateClone.FindString(log); m != "" {
		return fmt.Errorf("vm %d cannot move from node %s to %s (%s): a linked clone on local storage, or a template with linked clones, stays on its node; recreate it as a full clone on %s: %w",
			vmid, from, to, m, to, err)
	}
	return fmt.Errorf("move vm %d from node %s to %s: %w", vmid, from, to, err)
}
