package pve

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/phoenix-hv/phoenix/tasks"
)

type snapshotParams struct {
	Name        string `json:"name"` // "" disables the snapshot
	Description string `json:"description"`
}

// snapshotTask takes a named snapshot once.
type snapshotTask struct {
	qm
	p snapshotParams
}

// qm's snapshot name rule: a letter, then letters, digits, _ or -.
var reSnapName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]+$`)

func newSnapshot(q qm, p snapshotParams) (tasks.Task, error) {
	n := p.Name
	switch {
	case n == "":
	case !reSnapName.MatchString(n) || len(n) > 40:
		return nil, fmt.Errorf("parameters: name: %q is not a snapshot name (a letter, then letters, digits, _ or -; 2 to 40 characters)", n)
	case strings.EqualFold(n, "current") || strings.EqualFold(n, "pending"):
		return nil, fmt.Errorf("parameters: name: %q is reserved by qm", n)
	}
	return &snapshotTask{qm: q, p: p}, nil
}

func (t *snapshotTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid, name := env.VM.VMID, t.p.Name
	if name == "" {
		return none("snapshot disabled"), nil
	}
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	switch {
	case !st.Exists:
		return missing(env, fmt.Sprintf("vm %d does not exist yet; will take snapshot %s", vmid, name))
	case st.HasSnapshot(name):
		return none("snapshot %s exists", name), nil
	case st.Template():
		return tasks.Change{}, fmt.Errorf("vm %d is a template: templates cannot be snapshotted", vmid)
	}
	args := qmArgs("snapshot", vmid, name)
	if t.p.Description != "" {
		args = append(args, "--description", t.p.Description)
	}
	c := call{argv: args, timeout: qmTimeout}
	return planned(tasks.Create, "will take snapshot "+name, "took snapshot "+name, "+ snapshot: "+name+"\n", c), nil
}
