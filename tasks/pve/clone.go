package pve

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/phoenix-hv/phoenix/tasks"
)

type cloneParams struct {
	Source  int    `json:"source"`
	Name    string `json:"name"`
	Full    *bool  `json:"full"` // default true
	Storage string `json:"storage"`
}

// cloneTask creates the VM from a template (or stopped VM) unless it exists.
type cloneTask struct {
	qm
	p    cloneParams
	full bool
}

func newClone(q qm, p cloneParams) (tasks.Task, error) {
	if p.Source <= 0 {
		return nil, errors.New("parameters: source: want the VMID to clone from")
	}
	full := p.Full == nil || *p.Full
	if !full && p.Storage != "" {
		return nil, errors.New("parameters: storage: only a full clone can change storage")
	}
	return &cloneTask{qm: q, p: p, full: full}, nil
}

func (t *cloneTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if st.Exists {
		if lock := Config(st.Config).Lock(); lock == "clone" || lock == "create" {
			// The config qm writes first and unlocks last: this VM was never
			// finished. It is not done, and phoenix does not guess.
			return tasks.Change{}, fmt.Errorf("vm %d exists but holds lock: %s: %s", vmid, lock, lockAdvice(vmid, lock))
		}
		return none("vm %d exists", vmid), nil
	}
	src, err := ReadStateOf(ctx, env, t.p.Source)
	if err != nil {
		return tasks.Change{}, err
	}
	kind := "template"
	switch {
	case !src.Exists:
		return sourceMissing(env, t.p.Source)
	case !src.Template() && src.Status != "stopped":
		return tasks.Change{}, fmt.Errorf("clone source vm %d is %s: clone needs a template or a stopped VM", t.p.Source, src.Status)
	case !src.Template():
		kind = "stopped vm"
	}
	args := qmArgs("clone", t.p.Source, strconv.Itoa(vmid))
	if t.p.Name != "" {
		args = append(args, "--name", t.p.Name)
	}
	// Always an explicit value: a bare boolean would swallow the next word.
	copyKind := "linked clone"
	if t.full {
		args = append(args, "--full", "1")
		copyKind = "full copy"
		if t.p.Storage != "" {
			args = append(args, "--storage", t.p.Storage)
			copyKind += " on " + t.p.Storage
		}
	} else {
		args = append(args, "--full", "0")
	}
	what := fmt.Sprintf("%s %d to vm %d %s(%s)", kind, t.p.Source, vmid, nameWord(t.p.Name), copyKind)
	return planned(tasks.Create, "will clone "+what, "cloned "+what, "", call{argv: args, timeout: cloneTimeout}), nil
}

// nameWord is `"web01" ` or nothing.
func nameWord(name string) string {
	if name == "" {
		return ""
	}
	return strconv.Quote(name) + " "
}
