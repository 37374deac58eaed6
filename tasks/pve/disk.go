package pve

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/phoenix-hv/phoenix/tasks"
)

type diskParams struct {
	Disk   string `json:"disk"` // default scsi0
	SizeGB int    `json:"size_gb"`
}

// diskTask grows a disk to an absolute size; it never shrinks one.
type diskTask struct {
	qm
	p diskParams
}

var reDisk = regexp.MustCompile(`^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$`)

func newDisk(q qm, p diskParams) (tasks.Task, error) {
	if p.Disk == "" {
		p.Disk = "scsi0"
	}
	if !reDisk.MatchString(p.Disk) {
		return nil, fmt.Errorf("parameters: disk: %q is not a disk name like scsi0", p.Disk)
	}
	if p.SizeGB < 0 {
		return nil, errors.New("parameters: size_gb: must not be negative")
	}
	return &diskTask{qm: q, p: p}, nil
}

func (t *diskTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid, disk := env.VM.VMID, t.p.Disk
	if t.p.SizeGB == 0 {
		return none("no size given for %s", disk), nil
	}
	want := int64(t.p.SizeGB) << 30
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !st.Exists {
		return missing(env, fmt.Sprintf("vm %d does not exist yet; %s will be grown to %s if smaller", vmid, disk, FormatSize(want)))
	}
	cur, err := Config(st.Config).DiskSize(disk)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("vm %d: %w", vmid, err)
	}
	switch {
	case cur == want:
		return none("disk %s is %s", disk, FormatSize(cur)), nil
	case cur > want:
		return none("disk %s is %s, larger than %s; never shrunk", disk, FormatSize(cur), FormatSize(want)), nil
	}
	size := FormatSize(want)
	diff := fmt.Sprintf("- %s size: %s\n+ %s size: %s\n", disk, FormatSize(cur), disk, size)
	// Absolute size, so a retry never grows twice.
	c := call{argv: qmArgs("resize", vmid, disk, size), checkStderr: true, timeout: qmTimeout}
	what := fmt.Sprintf("%s from %s to %s", disk, FormatSize(cur), size)
	return planned(tasks.Update, "will grow "+what, "grew "+what, diff, c), nil
}
