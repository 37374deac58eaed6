package pve

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

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
	src, err := t.source(ctx, env)
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
	clone := call{argv: args, timeout: cloneTimeout}
	if src.where == "" {
		return planned(tasks.Create, "will clone "+what, "cloned "+what, "", clone), nil
	}
	return t.acrossNodes(ctx, env, src, clone, what)
}

// sourceState is the clone source's state and the node that has it.
type sourceState struct {
	*State
	where string // its inventory node; "" when it is the VM's own
}

// source reads the clone source where it lives: on the VM's node, or with
// a cluster view on the node of the cluster that has it (qm clone runs
// where the source's config is: qm never proxies).
func (t *cloneTask) source(ctx context.Context, env *tasks.Env) (sourceState, error) {
	id := t.p.Source
	if env.Cluster == nil {
		st, err := ReadStateOf(ctx, env, id)
		return sourceState{State: st}, err
	}
	loc, err := env.Cluster.Locate(ctx, id)
	switch {
	case err != nil:
		return sourceState{}, fmt.Errorf("clone source vm %d: %w", id, err)
	case !loc.Exists:
		return sourceState{State: &State{VMID: id}}, nil
	case loc.Type != "qemu":
		return sourceState{}, fmt.Errorf("clone source %d is a container (%s) on node %s, not a VM", id, loc.Type, loc.PVENode)
	case loc.Node == env.NodeName:
		st, err := ReadStateOf(ctx, env, id)
		return sourceState{State: st}, err
	case loc.Node == "":
		return sourceState{}, fmt.Errorf("clone source vm %d lives on node %s, which the inventory does not list: add it", id, loc.PVENode)
	}
	node, err := env.Cluster.Node(ctx, loc.Node)
	if err != nil {
		return sourceState{}, fmt.Errorf("clone source vm %d is on node %s: %w", id, loc.Node, err)
	}
	v, err := env.Cached("pve:state:"+strconv.Itoa(id)+"@"+loc.Node, func() (any, error) { return readState(ctx, node, id) })
	if err != nil {
		return sourceState{}, fmt.Errorf("clone source vm %d on node %s: %w", id, loc.Node, err)
	}
	return sourceState{State: v.(*State), where: loc.Node}, nil
}

// acrossNodes plans a clone of a source on another node of the cluster,
// within Proxmox's rules (pve-more.md §3.6): qm clone runs on the source's
// node; --target puts the clone on the VM's node when every volume of the
// source is on shared storage. Otherwise a full copy is made on the
// source's node and moved with an offline qm migrate, which copies local
// disks; a linked clone of local volumes can go nowhere else.
func (t *cloneTask) acrossNodes(ctx context.Context, env *tasks.Env, src sourceState, clone call, what string) (tasks.Change, error) {
	vmid := env.VM.VMID
	target := env.Cluster.PVEName(env.NodeName)
	if target == "" {
		return tasks.Change{}, fmt.Errorf("clone source vm %d is on node %s, and node %s is not in its cluster: a clone stays within a cluster", t.p.Source, src.where, env.NodeName)
	}
	storages, err := readStorages(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	local := localVolumes(src.Config, storages)
	clone.where = src.where
	clone.explain = func(err error) error { return cloneAcrossError(err, t.p.Source, src.where, env.NodeName) }
	from := fmt.Sprintf(" from node %s to %s", src.where, env.NodeName)
	if len(local) == 0 {
		if s := t.p.Storage; s != "" {
			st, ok := storages[s]
			switch {
			case !ok:
				return tasks.Change{}, fmt.Errorf("storage %q is not defined in %s", s, storageCfg)
			case !st.shared:
				return tasks.Change{}, fmt.Errorf("storage %s is not shared: a clone to another node (%s) goes to shared storage; leave storage out to keep the source's", s, env.NodeName)
			case !st.enabledOn(target):
				return tasks.Change{}, fmt.Errorf("storage %s is not enabled on node %s (nodes %s in %s)", s, target, strings.Join(st.nodes, ","), storageCfg)
			}
		}
		clone.argv = append(clone.argv, "--target", target)
		return planned(tasks.Create, "will clone "+what+from, "cloned "+what+from, "", clone), nil
	}
	uses := fmt.Sprintf("vm %d uses local storage (%s)", t.p.Source, strings.Join(local, ", "))
	if !t.full {
		return tasks.Change{}, fmt.Errorf("clone source %s on node %s: a linked clone cannot reach node %s (Proxmox clones to another node only from shared storage, and a linked clone of local storage never moves): clone full, or keep the source on shared storage",
			uses, src.where, env.NodeName)
	}
	migrate := call{argv: qmArgs("migrate", vmid, target), timeout: cloneTimeout, where: src.where,
		explain: func(err error) error {
			return fmt.Errorf("vm %d was cloned on node %s but not moved to %s (the next run with --migrate moves it): %w", vmid, src.where, env.NodeName, err)
		}}
	why := fmt.Sprintf(" on node %s, then moved to %s (offline migration: %s, and Proxmox clones to another node only from shared storage)", src.where, env.NodeName, uses)
	return planned(tasks.Create, "will clone "+what+why, "cloned "+what+why, "", clone, migrate), nil
}

// diskKey is a config key whose value is a volume a clone copies (unusedN
// are not copied; pve-more.md §3.6 counts CD-ROMs and cloud-init drives).
var diskKey = regexp.MustCompile(`^((ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0)$`)

// localVolumes lists the source's volumes that are not on shared storage,
// as "KEY (STORAGE)": a host path or an unknown storage counts as local.
func localVolumes(cfg Config, storages map[string]fileStorage) []string {
	var out []string
	for _, key := range slices.Sorted(maps.Keys(cfg)) {
		if !diskKey.MatchString(key) {
			continue
		}
		vol, _, _ := strings.Cut(cfg[key], ",")
		if vol == "none" || vol == "cdrom" || vol == "" {
			continue // an empty drive, or the host's drive
		}
		storage, _, ok := strings.Cut(vol, ":")
		if !ok || strings.HasPrefix(vol, "/") {
			out = append(out, key+" (host path "+vol+")")
			continue
		}
		if st, known := storages[storage]; !known || !st.shared {
			out = append(out, key+" ("+storage+")")
		}
	}
	return out
}

// reCloneRule are qm clone's refusals of a clone to another node
// (pve-more.md §3.6).
var reCloneRule = regexp.MustCompile(`can't clone VM to node '[^']*' \(VM uses local storage\)|can't clone to non-shared storage '[^']*'|storage '[^']*' is not available on node '[^']*'|no such cluster node '[^']*'`)

// cloneAcrossError says what to do when Proxmox refuses a clone to another
// node; other failures are returned as they are.
func cloneAcrossError(err error, source int, from, to string) error {
	m := reCloneRule.FindString(stderrOf(err))
	if m == "" {
		return err
	}
	return fmt.Errorf("Proxmox refused to clone vm %d from node %s to %s (%s): every volume of the source must be on shared storage "+
		"(storage.cfg: shared 1, or nfs, cephfs, rbd, …) and the storage enabled on %s; or keep a template on each node: %w", source, from, to, m, to, err)
}

// nameWord is `"web01" ` or nothing.
func nameWord(name string) string {
	if name == "" {
		return ""
	}
	return strconv.Quote(name) + " "
}
