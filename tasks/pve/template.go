package pve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// A template phoenix builds (qm.md §4.4, §4.15; pve-more.md §1): vm_image
// puts the cloud image on the node, vm_create makes the VM with the image
// as its boot disk, the playbook's usual steps configure, boot and provision
// it, guest_template_prep cleans it, and vm_template converts it. The VM's
// description records the image, so a later run tells a template built
// from another image (drift) and rebuilds it only when asked.

var reSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// recordHead starts the description of a VM phoenix created from an image.
const recordHead = "phoenix: built from a cloud image"

// buildRecord is the image a VM was built from, as its description says.
type buildRecord struct {
	ok          bool // the description is phoenix's
	url, sha256 string
}

func (r buildRecord) description() string {
	d := recordHead + "\nimage " + r.url
	if r.sha256 != "" {
		d += "\nsha256 " + r.sha256
	}
	return d
}

// parseRecord reads the record from a VM's config; qm config shows the
// description percent-encoded (':' and newlines included).
func parseRecord(cfg Config) buildRecord {
	text := cfg["description"]
	if d, err := url.PathUnescape(text); err == nil {
		text = d
	}
	if !strings.HasPrefix(text, recordHead) {
		return buildRecord{}
	}
	r := buildRecord{ok: true}
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "image "); ok {
			r.url = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "sha256 "); ok {
			r.sha256 = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return r
}

// templateBuild is where a template's build stands on the node.
type templateBuild struct {
	vmid   int
	st     *State
	record buildRecord
	want   string // the config's sha256, "" when not given
	// drift: the template was built from another image than the config's.
	drift bool
	// rebuild: drift, and this run rebuilds it (--rebuild-template).
	rebuild bool
}

func readTemplateBuild(ctx context.Context, env *tasks.Env, want string) (*templateBuild, error) {
	vmid := env.VM.VMID
	st, err := ReadState(ctx, env)
	if err != nil {
		return nil, err
	}
	tb := &templateBuild{vmid: vmid, st: st, want: want}
	if !st.Exists {
		return tb, nil
	}
	tb.record = parseRecord(Config(st.Config))
	tb.drift = st.Template() && want != "" && tb.record.sha256 != "" && tb.record.sha256 != want
	if tb.drift && env.RebuildTemplates {
		clones, err := linkedClones(ctx, env, vmid)
		if err != nil {
			return nil, err
		}
		if len(clones) > 0 {
			return nil, fmt.Errorf("template %d: %s; not rebuilt: the linked clones %s use its disks (destroy them, or make them full clones, first)",
				vmid, tb.driftWords(), joinInts(clones))
		}
		tb.rebuild = true
	}
	return tb, nil
}

func (tb *templateBuild) driftWords() string {
	return fmt.Sprintf("built from image sha256 %s, the config now says %s", short(tb.record.sha256), short(tb.want))
}

// settled answers for a template that needs no image: one that is built
// (the rest of its playbook is skipped) or one whose build was interrupted
// (its VM exists). need is true for a template to create or rebuild.
func (tb *templateBuild) settled(env *tasks.Env) (c tasks.Change, need bool, err error) {
	vmid, st := tb.vmid, tb.st
	switch {
	case !st.Exists || tb.rebuild:
		return tasks.Change{}, true, nil
	case st.Template() && tb.drift:
		warnOnce(env, "template drift", "warning: template %d drifted: %s; run with --rebuild-template to rebuild it", vmid, tb.driftWords())
		built := fmt.Sprintf("template %d is built", vmid)
		c := none("template %d is built but drifted: %s; not rebuilt (--rebuild-template rebuilds it)", vmid, tb.driftWords())
		c.SkipRest = built
		return c, false, nil
	case st.Template():
		built := fmt.Sprintf("template %d is built", vmid)
		c := none("%s%s", built, tb.record.words())
		c.SkipRest = built
		return c, false, nil
	case Config(st.Config).Lock() == "create":
		return tasks.Change{}, false, fmt.Errorf("vm %d exists but holds lock: create: %s", vmid, lockAdvice(vmid, "create"))
	case !tb.record.ok && env.VM.CloneFromVMID == 0:
		return tasks.Change{}, false, fmt.Errorf("vm %d exists and is not a template, and phoenix did not create it (its description has no build record): phoenix does not turn it into a template; destroy it or fix the config", vmid)
	}
	return none("vm %d exists, not a template yet: its build goes on from where it is", vmid), false, nil
}

// words says what a template was built from, for a summary.
func (r buildRecord) words() string {
	switch {
	case !r.ok:
		return " (not by phoenix: its image is unknown)"
	case r.sha256 == "":
		return " from " + r.url
	}
	return fmt.Sprintf(" from %s (sha256 %s)", r.url, short(r.sha256))
}

// baseVolume matches a disk of a linked clone of template vmid: its volume
// is named after the template's base volume (base-9000-disk-0/vm-101-disk-0
// on LVM-thin and ZFS, 9000/base-9000-disk-0.qcow2/101/… on a directory).
func baseVolume(vmid int) *regexp.Regexp {
	return regexp.MustCompile(`(^|[:/])base-` + strconv.Itoa(vmid) + `-disk-\d+[^,/]*/`)
}

var reDiskKey = regexp.MustCompile(`^(scsi|virtio|sata|ide|efidisk|tpmstate|unused)\d+$`)

// linkedClones lists the VMs of the node whose disks are linked clones of
// template vmid's.
func linkedClones(ctx context.Context, env *tasks.Env, vmid int) ([]int, error) {
	line := transport.Command("pvesh", "get", fmt.Sprintf("/nodes/%s/qemu", pveNode(env)), "--output-format", "json")
	res, err := env.Node.Run(ctx, transport.Cmd{Line: line, Timeout: tasks.ProbeTimeout, Probe: true})
	if err != nil {
		return nil, fmt.Errorf("list the node's VMs: %w", err)
	}
	var vms []struct {
		VMID json.Number `json:"vmid"`
	}
	if err := json.Unmarshal(res.Stdout, &vms); err != nil {
		return nil, fmt.Errorf("list the node's VMs: %s: %w", line, err)
	}
	base := baseVolume(vmid)
	var out []int
	for _, v := range vms {
		id, err := strconv.Atoi(v.VMID.String())
		if err != nil || id == vmid {
			continue
		}
		st, err := ReadStateOf(ctx, env, id)
		if err != nil {
			return nil, err
		}
		for k, val := range st.Config {
			if reDiskKey.MatchString(k) && base.MatchString(val) {
				out = append(out, id)
				break
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func joinInts(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ", ")
}

type createParams struct {
	imageParams
	Name   string `json:"name"`
	Cores  int    `json:"cores"`
	Memory int    `json:"memory"` // MiB
	Bridge string `json:"bridge"` // net0's bridge; default vmbr0
	// DiskStorage holds the boot disk and the cloud-init drive (the VM's
	// storage_pool); default local-lvm.
	DiskStorage string `json:"disk_storage"`
	// CIUpgrade lets cloud-init upgrade packages on every first boot; off
	// by default: what a template holds is what its build installed.
	CIUpgrade bool `json:"ciupgrade"`
}

// createTask is vm_create: qm create with the cloud image imported as the
// boot disk, a cloud-init drive, the serial console and the agent; for a
// template with drift and --rebuild-template, after destroying it.
type createTask struct {
	qm
	p   createParams
	src *inventory.ImageSource
}

func newCreate(q qm, p createParams) (tasks.Task, error) {
	src, err := p.source()
	if err != nil {
		return nil, err
	}
	if src == nil {
		return nil, fmt.Errorf("parameters: image: want the cloud image (template_image)")
	}
	if p.Bridge == "" {
		p.Bridge = "vmbr0"
	}
	if p.DiskStorage == "" {
		p.DiskStorage = "local-lvm"
	}
	switch {
	case p.Cores < 0:
		return nil, fmt.Errorf("parameters: cores: must not be negative")
	case p.Memory < 0:
		return nil, fmt.Errorf("parameters: memory: must not be negative")
	}
	return &createTask{qm: q, p: p, src: src}, nil
}

func (t *createTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	tb, err := readTemplateBuild(ctx, env, t.p.SHA256)
	if err != nil {
		return tasks.Change{}, err
	}
	if tb.st.Exists && !tb.rebuild {
		return none("vm %d exists", vmid), nil
	}
	st, err := readStorage(ctx, env, t.p.Storage)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("template %d: %w", vmid, err)
	}
	file := st.imagePath(t.src)
	rec := buildRecord{ok: true, url: t.src.URL, sha256: t.p.SHA256}
	if rec.sha256 == "" {
		// Recorded all the same, so a checksum added to the config later
		// finds the template built from the image it names.
		f, err := readImageFile(ctx, env, file, true)
		switch {
		case err != nil:
			return tasks.Change{}, err
		case !f.exists && !env.DryRun:
			return tasks.Change{}, fmt.Errorf("image %s is not on the node (the image step puts it there)", file)
		}
		rec.sha256 = f.sha256
	}
	create := call{argv: t.argv(vmid, file, rec), timeout: cloneTimeout}
	what := fmt.Sprintf("vm %d %sfrom %s (boot disk scsi0 on %s, cloud-init drive, serial console, agent)", vmid, nameWord(t.p.Name), file, t.p.DiskStorage)
	diff := fmt.Sprintf("+ vm %d %s: scsi0 imported from %s\n", vmid, t.p.Name, file)
	if !tb.rebuild {
		return planned(tasks.Create, "will create "+what, "created "+what, diff, create), nil
	}
	destroy := call{argv: qmArgs("destroy", vmid, "--purge", "1"), timeout: qmTimeout, done: IsNotExist}
	diff = fmt.Sprintf("- template %d: image sha256 %s\n", vmid, tb.record.sha256) + diff
	c := planned(tasks.Create,
		fmt.Sprintf("will rebuild template %d (%s): destroy it, then create %s", vmid, tb.driftWords(), what),
		fmt.Sprintf("destroyed template %d (%s) and created %s", vmid, tb.driftWords(), what),
		diff, destroy, create)
	if env.DryRun {
		c.SkipRest = fmt.Sprintf("known once template %d is rebuilt", vmid)
	}
	return c, nil
}

// argv is the qm create line: the VM's settings and every device a cloud
// image expects (pve-more.md §1.4).
func (t *createTask) argv(vmid int, file string, rec buildRecord) []string {
	args := qmArgs("create", vmid)
	if t.p.Name != "" {
		args = append(args, "--name", t.p.Name)
	}
	if t.p.Memory > 0 {
		args = append(args, "--memory", strconv.Itoa(t.p.Memory))
	}
	if t.p.Cores > 0 {
		args = append(args, "--cores", strconv.Itoa(t.p.Cores))
	}
	return append(args,
		"--ostype", "l26",
		"--net0", "virtio,bridge="+t.p.Bridge,
		"--scsihw", "virtio-scsi-pci",
		"--scsi0", t.p.DiskStorage+":0,import-from="+file,
		"--ide2", t.p.DiskStorage+":cloudinit",
		"--boot", "order=scsi0",
		"--serial0", "socket", "--vga", "serial0",
		"--agent", "enabled=1",
		"--ciupgrade", boolWord(t.p.CIUpgrade),
		"--description", rec.description())
}

type templateParams struct{}

// templateTask is vm_template: qm template on the stopped, cleaned VM. It
// first drops the cicustom that pointed at the VM's own host key snippet
// (removed before, with the pin): a clone would otherwise refuse to start
// without it, or share one host key with every other clone.
type templateTask struct{ qm }

func newTemplate(q qm, _ templateParams) (tasks.Task, error) { return &templateTask{qm: q}, nil }

func (t *templateTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	switch {
	case !st.Exists:
		return missing(env, fmt.Sprintf("vm %d does not exist yet; will convert it to a template", vmid))
	case st.Template():
		return none("vm %d is a template", vmid), nil
	case st.Status != "stopped" && env.DryRun:
		return tasks.Change{Action: tasks.Unknown, Summary: fmt.Sprintf("vm %d is %s; will convert it to a template once it is stopped", vmid, st.Status)}, nil
	case st.Status != "stopped":
		return tasks.Change{}, fmt.Errorf("vm %d is %s: qm template needs it stopped", vmid, st.Status)
	case len(st.Snapshots) > 0:
		return tasks.Change{}, fmt.Errorf("vm %d has snapshots (%s): qm template refuses a VM with snapshots; delete them (qm delsnapshot) first", vmid, strings.Join(st.Snapshots, ", "))
	}
	var calls []call
	diff := "+ template: 1\n"
	if cc := st.Config["cicustom"]; strings.Contains(cc, fmt.Sprintf("phoenix-%d-hostkey.yml", vmid)) {
		calls = append(calls, call{argv: qmArgs("set", vmid, "--delete", "cicustom"), timeout: qmTimeout})
		diff = "- cicustom: " + cc + "\n" + diff
	}
	calls = append(calls, call{argv: qmArgs("template", vmid), timeout: qmTimeout, checkStderr: true})
	return planned(tasks.Update, fmt.Sprintf("will convert vm %d to a template", vmid), fmt.Sprintf("converted vm %d to a template", vmid), diff, calls...), nil
}

// sourceMissing is vm_clone's answer when its source does not exist: a dry
// run that builds the source first cannot know more; otherwise the error
// says how to build it.
func sourceMissing(env *tasks.Env, source int) (tasks.Change, error) {
	vmid := env.VM.VMID
	if env.DryRun && slices.Contains(env.InRun, source) {
		return tasks.Change{Action: tasks.Unknown, Summary: fmt.Sprintf("will clone vm %d to vm %d once this run has built it", source, vmid)}, nil
	}
	err := fmt.Errorf("clone source vm %d does not exist", source)
	if env.Config == nil {
		return tasks.Change{}, err
	}
	if src := env.Config.Lookup(source); src != nil && src.IsTemplate {
		return tasks.Change{}, fmt.Errorf("%w: it is template %d of %s; build it with `phoenix create %d`, or add it to this run with --with-deps", err, source, env.Config.File, source)
	}
	if env.Config.Lookup(source) != nil {
		return tasks.Change{}, fmt.Errorf("%w: create it first with `phoenix create %d`, or add it to this run with --with-deps", err, source)
	}
	return tasks.Change{}, err
}
