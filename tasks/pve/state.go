package pve

import (
	"context"
	"errors"

	"github.com/phoenix-hv/phoenix/tasks"
)

// State is what the node says about one VM, read once per run.
// (Contract stub: the fields are agreed; the reader is replaced.)
type State struct {
	VMID      int
	Exists    bool
	Status    string            // "running", "stopped", … ("" when missing)
	Config    map[string]string // qm config, pending applied
	Snapshots []string          // exact names, without "current"
}

// ReadState returns the VM's state, read with one batched round trip and
// cached in env until the runner forgets it after a change.
func ReadState(ctx context.Context, env *tasks.Env) (*State, error) {
	return nil, errors.New("not implemented")
}
