package pve

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// State is what the node says about one VM, read once per run.
type State struct {
	VMID      int
	Exists    bool
	Status    string            // "running", "stopped", … ("" when missing)
	Config    map[string]string // qm config, pending applied
	Snapshots []string          // exact names, without "current"
}

// Template reports whether the VM is a template.
func (s *State) Template() bool { return Config(s.Config).Template() }

// HasSnapshot reports whether a snapshot of exactly this name exists.
func (s *State) HasSnapshot(name string) bool { return slices.Contains(s.Snapshots, name) }

// ReadState returns the VM's state, read with one batched round trip and
// cached in env until the runner forgets it after a change.
func ReadState(ctx context.Context, env *tasks.Env) (*State, error) {
	return ReadStateOf(ctx, env, env.VM.VMID)
}

// ReadStateOf is ReadState for any VM of the node, such as a clone source.
func ReadStateOf(ctx context.Context, env *tasks.Env, vmid int) (*State, error) {
	v, err := env.Cached("pve:state:"+strconv.Itoa(vmid), func() (any, error) {
		return readState(ctx, env.Node, vmid)
	})
	if err != nil {
		return nil, err
	}
	return v.(*State), nil
}

// stateLines are the three reads of a VM's state, run at the same time in
// one round trip: three qm start-ups cost one.
func stateLines(vmid int) []string {
	id := strconv.Itoa(vmid)
	return []string{
		transport.Command("qm", "config", id),
		transport.Command("qm", "status", id),
		transport.Command("qm", "listsnapshot", id),
	}
}

func readState(ctx context.Context, node transport.Runner, vmid int) (*State, error) {
	ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	lines := stateLines(vmid)
	res, err := transport.BatchParallel(ctx, node, lines)
	if err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	return parseState(vmid, lines, res)
}

// ReadStates reads the state of several VMs of one node in one round trip
// (phoenix status). A VM whose state cannot be read has its error in errs.
func ReadStates(ctx context.Context, node transport.Runner, vmids []int) (states map[int]*State, errs map[int]error, err error) {
	ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	var lines []string
	for _, id := range vmids {
		lines = append(lines, stateLines(id)...)
	}
	res, err := transport.Batch(ctx, node, lines)
	if err != nil {
		return nil, nil, fmt.Errorf("read the state of vm %v: %w", vmids, err)
	}
	states, errs = map[int]*State{}, map[int]error{}
	n := len(lines) / max(len(vmids), 1) // lines per VM
	for i, id := range vmids {
		if st, err := parseState(id, lines[i*n:(i+1)*n], res[i*n:(i+1)*n]); err != nil {
			errs[id] = err
		} else {
			states[id] = st
		}
	}
	return states, errs, nil
}

// parseState reads the results of stateLines(vmid).
func parseState(vmid int, lines []string, res []transport.Result) (*State, error) {
	st := &State{VMID: vmid}
	if err := res[0].Err(lines[0]); err != nil {
		if IsNotExist(err) {
			return st, nil
		}
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	for i, r := range res[1:] {
		if err := r.Err(lines[i+1]); err != nil {
			return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
		}
	}
	cfg, err := ParseConfig(res[0].Stdout)
	if err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	if st.Status, err = ParseStatus(res[1].Stdout); err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	if st.Snapshots, err = ParseSnapshots(res[2].Stdout); err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	st.Exists, st.Config = true, cfg
	return st, nil
}
