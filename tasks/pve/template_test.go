package pve

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// Template 9000 built from the rig's image, as the rig's config gives it.
const (
	imageURL = "http://10.210.0.3/phoenix-rig-debian-12-amd64.qcow2"
	rigImage = "/var/lib/vz/import/phoenix-rig-debian-12-amd64.qcow2"
	sumA     = "7dc470f8f7198f8e45be04fbfe75f28d6dd8eafd1eef315988d5e87ed83f0485"
	sumB     = "0b5e1c3f2a49d8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2918f7e6d5c4b3a2910"

	// storage.cfg as the installer writes it, import enabled on local.
	storageWithImport = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup,snippets,import\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n"
	// The installer's default: no import content.
	storageNoImport = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n"

	readStorageLine = "test ! -e /etc/pve/storage.cfg || cat /etc/pve/storage.cfg"
	hashImageLine   = "test ! -e " + rigImage + " || sha256sum -- " + rigImage
	downloadLine    = "pvesh create /nodes/pve/storage/local/download-url --content import --filename phoenix-rig-debian-12-amd64.qcow2 --url " + imageURL + " --checksum " + sumA + " --checksum-algorithm sha256"
	createLine      = "qm create 9000 --name debian-12-cloud --memory 1024 --cores 1 --ostype l26 --net0 virtio,bridge=vmbr0 --scsihw virtio-scsi-pci" +
		" --scsi0 local-lvm:0,import-from=" + rigImage + " --ide2 local-lvm:cloudinit --boot 'order=scsi0' --serial0 socket --vga serial0" +
		" --agent 'enabled=1' --ciupgrade 0 --description 'phoenix: built from a cloud image\nimage " + imageURL + "\nsha256 " + sumA + "'"
	templateLine = "qm template 9000"
)

var (
	imageParams9000  = map[string]any{"image": imageURL, "sha256": sumA, "storage": "local"}
	createParams9000 = merge(imageParams9000, map[string]any{"name": "debian-12-cloud", "cores": 1, "memory": 1024, "bridge": "vmbr0", "disk_storage": "local-lvm"})
)

// description is the record as qm config prints it (percent-encoded).
func description(url, sum string) string {
	var b strings.Builder
	for _, c := range []byte(recordHead + "\nimage " + url + "\nsha256 " + sum) {
		if c < 0x20 || c > 0x7e || c == ':' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// built9000 is 9000 after qm create, then as the build leaves it.
var (
	created9000 = map[string]string{
		"agent": "enabled=1", "boot": "order=scsi0", "ciupgrade": "0", "cores": "1",
		"description": description(imageURL, sumA),
		"ide2":        "local-lvm:vm-9000-cloudinit,media=cdrom", "memory": "1024",
		"meta": "creation-qemu=9.0.2,ctime=1717000000", "name": "debian-12-cloud",
		"net0": "virtio=BC:24:11:90:00:01,bridge=vmbr0", "ostype": "l26",
		"scsi0": "local-lvm:vm-9000-disk-0,size=2G", "scsihw": "virtio-scsi-pci", "serial0": "socket",
		"smbios1": "uuid=5b0e8f1c-7d3a-4c55-9a41-2f6de0b90000", "vga": "serial0", "vmgenid": "0b6e3c2a-1f4d-4e8b-9c7a-5d2e1f909000",
	}
	provisioned9000 = with(created9000, "ciuser", "phoenix", "ipconfig0", "ip=dhcp",
		"cicustom", "vendor=local:snippets/phoenix-9000-hostkey.yml", "scsi0", "local-lvm:vm-9000-disk-0,size=32G")
	template9000Built = with(provisioned9000, "cicustom", "", "template", "1", "scsi0", "local-lvm:base-9000-disk-0,size=32G")
)

func templateEnv(node *fake.Transport, dryRun, rebuild bool) *tasks.Env {
	return &tasks.Env{VM: &inventory.VM{VMID: 9000, Name: "debian-12-cloud", IsTemplate: true}, Node: node, PVENode: "pve",
		DryRun: dryRun, RebuildTemplates: rebuild}
}

type step struct {
	kind     string
	params   map[string]any
	later    bool        // steps not shown here changed the VM before this one
	reads    []fake.Call // Check's reads of what the steps before have not read
	action   tasks.Action
	summary  string
	commands []string
	apply    []fake.Call
	after    fake.Call // the state read of the re-check
	reread   []fake.Call
}

// runSteps checks, applies and re-checks each step as the runner does
// (facts read once, forgotten after a change); the strict fake asserts
// every line.
func runSteps(t *testing.T, env *tasks.Env, node *fake.Transport, steps []step) {
	t.Helper()
	ctx := context.Background()
	for _, s := range steps {
		if s.later {
			env.Forget("pve:")
		}
		node.Expect(s.reads...)
		task := newTask(t, s.kind, s.params)
		c, err := task.Check(ctx, env)
		if err != nil {
			t.Fatalf("%s check: %v", s.kind, err)
		}
		if c.Action != s.action || !strings.Contains(c.Summary, s.summary) || !slices.Equal(c.Commands, s.commands) {
			t.Fatalf("%s check = %s %q\ncommands %q\nwant %s %q\ncommands %q", s.kind, c.Action, c.Summary, c.Commands, s.action, s.summary, s.commands)
		}
		if !c.Pending() {
			continue
		}
		node.Expect(s.apply...)
		if err := task.Apply(ctx, env, c); err != nil {
			t.Fatalf("%s apply: %v", s.kind, err)
		}
		env.Forget("pve:")
		node.Expect(s.after)
		node.Expect(s.reread...)
		if c, err := task.Check(ctx, env); err != nil || c.Pending() {
			t.Fatalf("%s re-check = %s %q, %v; want none", s.kind, c.Action, c.Summary, err)
		}
	}
}

// A fresh node: the image is downloaded with download-url and its checksum,
// the VM created with the image as its boot disk; once provisioned and
// stopped (the guest steps are tested in tasks/guest), the cicustom of its
// host key snippet is dropped and qm template converts it.
func TestTemplateBuildFresh(t *testing.T) {
	node := fake.New(t)
	env := templateEnv(node, false, false)
	runSteps(t, env, node, []step{
		{kind: "vm_image", params: imageParams9000,
			reads:    []fake.Call{missingRead(9000), {Line: readStorageLine, Result: fake.Out(storageWithImport)}, {Line: hashImageLine}},
			action:   tasks.Create,
			summary:  "will download " + imageURL + " to " + rigImage + " (pvesh download-url), verified against sha256 7dc470f8f719…",
			commands: []string{downloadLine},
			apply: []fake.Call{{Line: downloadLine, Result: fake.Out("downloading " + imageURL + " to " + rigImage + "\n" +
				"calculating checksum...OK, checksum verified\nUPID:pve:00001093:0001E240:663367A7:download:phoenix-rig-debian-12-amd64.qcow2:root@pam:\n")}},
			after:  missingRead(9000),
			reread: []fake.Call{{Line: readStorageLine, Result: fake.Out(storageWithImport)}, {Line: hashImageLine, Result: fake.Out(sumA + "  " + rigImage + "\n")}},
		},
		{kind: "vm_create", params: createParams9000,
			action:   tasks.Create,
			summary:  `will create vm 9000 "debian-12-cloud" from ` + rigImage + " (boot disk scsi0 on local-lvm, cloud-init drive, serial console, agent)",
			commands: []string{createLine},
			apply: []fake.Call{{Line: createLine, Result: fake.Out("ide2: successfully created disk 'local-lvm:vm-9000-cloudinit,media=cdrom'\n" +
				"transferred 0.0 B of 2.0 GiB (0.00%)\ntransferred 2.0 GiB of 2.0 GiB (100.00%)\nscsi0: successfully created disk 'local-lvm:vm-9000-disk-0,size=2G'\n")}},
			after: stateRead(9000, created9000, "stopped", noSnapshots),
		},
		// … configured, booted, provisioned, cleaned and shut down by the
		// playbook's other steps …
		{kind: "vm_template", params: map[string]any{}, later: true,
			reads:    []fake.Call{stateRead(9000, provisioned9000, "stopped", noSnapshots)},
			action:   tasks.Update,
			summary:  "will convert vm 9000 to a template",
			commands: []string{"qm set 9000 --delete cicustom", templateLine},
			apply:    []fake.Call{{Line: "qm set 9000 --delete cicustom", Result: fake.Out("update VM 9000: -delete cicustom\n")}, {Line: templateLine}},
			after:    stateRead(9000, template9000Built, "stopped", noSnapshots),
		},
	})
	// A second run: the first step reads the state once and ends the build.
	env = templateEnv(node, false, false)
	node.Expect(stateRead(9000, template9000Built, "stopped", noSnapshots))
	c, err := newTask(t, "vm_image", imageParams9000).Check(context.Background(), env)
	if err != nil || c.Pending() || c.SkipRest != "template 9000 is built" || c.Summary != "template 9000 is built from "+imageURL+" (sha256 7dc470f8f719…)" {
		t.Errorf("second run: %s %q skip rest %q, %v", c.Action, c.Summary, c.SkipRest, err)
	}
}

// Without download-url for the image's content type, the node downloads
// with wget into a temp file, checks its sha256 and renames it into place
// only when it matches.
func TestImagePlainDownload(t *testing.T) {
	node := fake.New(t, missingRead(9000), fake.Call{Line: readStorageLine, Result: fake.Out(storageNoImport)}, fake.Call{Line: hashImageLine})
	env := templateEnv(node, false, false)
	task := newTask(t, "vm_image", imageParams9000)
	c := checked(t, task, env)
	script := `set -eu; dest=` + rigImage + `; tmp=$(mktemp "$dest.phoenix-XXXXXX"); trap 'rm -f "$tmp"' EXIT; trap 'exit 1' HUP INT TERM; ` +
		`wget -nv -O "$tmp" ` + imageURL + `; got=$(sha256sum < "$tmp" | cut -d' ' -f1); ` +
		`if [ "$got" != ` + sumA + ` ]; then echo "checksum mismatch: got '$got' != expect '"` + sumA + `"'" >&2; exit 1; fi; ` +
		`chmod 0644 "$tmp"; mv -f "$tmp" "$dest"`
	want := "sh -c '" + strings.ReplaceAll(script, "'", `'\''`) + "'"
	if !slices.Equal(c.Commands, []string{want}) || !strings.Contains(c.Summary, "(wget: storage local is not configured for content import)") {
		t.Fatalf("plan %q\ncommands %q\nwant %q", c.Summary, c.Commands, want)
	}
	node.Expect(fake.Call{Line: want, Result: fake.Fail(1, "checksum mismatch: got '"+sumB+"' != expect '"+sumA+"'\n")})
	if err := task.Apply(context.Background(), env, c); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("apply err = %v, want the mismatch", err)
	}
}

func TestImageCheck(t *testing.T) {
	storage := fake.Call{Line: readStorageLine, Result: fake.Out(storageWithImport)}
	tests := []struct {
		name      string
		params    map[string]any
		reads     []fake.Call
		dryRun    bool
		rebuild   bool
		cloneFrom int // a template made by cloning
		action    tasks.Action
		summary   string // substring
		skipRest  string
		commands  []string
		err       string
	}{
		{name: "on the node with the right checksum", params: imageParams9000,
			reads:  []fake.Call{missingRead(9000), storage, {Line: hashImageLine, Result: fake.Out(sumA + "  " + rigImage + "\n")}},
			action: tasks.None, summary: "image " + rigImage + " is on the node with sha256 7dc470f8f719…"},
		{name: "on the node without a checksum to compare", params: merge(imageParams9000, map[string]any{"sha256": ""}),
			reads:  []fake.Call{missingRead(9000), storage, {Line: "test -e " + rigImage}},
			action: tasks.None, summary: "is on the node (not verified: no template_image_sha256)"},
		{name: "on the node with another checksum", params: imageParams9000,
			reads:  []fake.Call{missingRead(9000), storage, {Line: hashImageLine, Result: fake.Out(sumB + "  " + rigImage + "\n")}},
			action: tasks.Create, summary: "will replace " + rigImage + " (sha256 0b5e1c3f2a49…, the config wants 7dc470f8f719…)",
			commands: []string{"rm -f -- " + rigImage, downloadLine}},
		{name: "interrupted build goes on without the image", params: imageParams9000,
			reads:  []fake.Call{stateRead(9000, provisioned9000, "running", noSnapshots)},
			action: tasks.None, summary: "vm 9000 exists, not a template yet: its build goes on from where it is"},
		{name: "built by hand", params: imageParams9000,
			reads:  []fake.Call{stateRead(9000, with(template9000Built, "description", ""), "stopped", noSnapshots)},
			action: tasks.None, summary: "template 9000 is built (not by phoenix: its image is unknown)", skipRest: "template 9000 is built"},
		{name: "drift is reported, not rebuilt", params: merge(imageParams9000, map[string]any{"sha256": sumB}),
			reads:  []fake.Call{stateRead(9000, template9000Built, "stopped", noSnapshots)},
			action: tasks.None, summary: "template 9000 is built but drifted: built from image sha256 7dc470f8f719…, the config now says 0b5e1c3f2a49…; not rebuilt (--rebuild-template rebuilds it)",
			skipRest: "template 9000 is built"},
		{name: "drift, rebuild refused while a linked clone exists", params: merge(imageParams9000, map[string]any{"sha256": sumB}), rebuild: true,
			reads: []fake.Call{stateRead(9000, template9000Built, "stopped", noSnapshots),
				{Line: "pvesh get /nodes/pve/qemu --output-format json", Result: fake.Out(`[{"name":"debian-12-cloud","status":"stopped","template":1,"vmid":9000},{"name":"web01","status":"running","vmid":8101},{"name":"web02","status":"stopped","vmid":8102}]` + "\n")},
				stateRead(8101, resized, "running", noSnapshots),
				stateRead(8102, with(resized, "scsi0", "local-lvm:base-9000-disk-0/vm-8102-disk-0,size=32G"), "stopped", noSnapshots)},
			err: "template 9000: built from image sha256 7dc470f8f719…, the config now says 0b5e1c3f2a49…; not rebuilt: the linked clones 8102 use its disks"},
		{name: "not phoenix's VM", params: imageParams9000,
			reads: []fake.Call{stateRead(9000, with(provisioned9000, "description", "my own VM"), "stopped", noSnapshots)},
			err:   "vm 9000 exists and is not a template, and phoenix did not create it"},
		{name: "interrupted qm create", params: imageParams9000,
			reads: []fake.Call{stateRead(9000, with(created9000, "lock", "create"), "stopped", noSnapshots)},
			err:   "vm 9000 exists but holds lock: create: a create that did not finish"},
		{name: "a template made by cloning needs no image", params: map[string]any{}, cloneFrom: 9001,
			reads:  []fake.Call{missingRead(9000)},
			action: tasks.None, summary: "template 9000 is made by cloning vm 9001, from no image"},
		{name: "a cloned template goes on though its description is not phoenix's", params: map[string]any{}, cloneFrom: 9001,
			reads:  []fake.Call{stateRead(9000, with(provisioned9000, "description", ""), "running", noSnapshots)},
			action: tasks.None, summary: "vm 9000 exists, not a template yet: its build goes on from where it is"},
		{name: "no image to build from", params: map[string]any{},
			reads: []fake.Call{missingRead(9000)},
			err:   "template 9000 does not exist and the config gives no template_image to build it from"},
		{name: "storage without files", params: merge(imageParams9000, map[string]any{"storage": "local-lvm"}),
			reads: []fake.Call{missingRead(9000), storage},
			err:   `storage "local-lvm" (lvmthin) keeps no files`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := fake.New(t, tt.reads...)
			env := templateEnv(node, tt.dryRun, tt.rebuild)
			env.VM.CloneFromVMID = tt.cloneFrom
			c, err := newTask(t, "vm_image", tt.params).Check(context.Background(), env)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			case c.Action != tt.action || !strings.Contains(c.Summary, tt.summary) || c.SkipRest != tt.skipRest || !slices.Equal(c.Commands, tt.commands):
				t.Fatalf("check = %s %q skip rest %q commands %q\nwant %s %q skip rest %q commands %q",
					c.Action, c.Summary, c.SkipRest, c.Commands, tt.action, tt.summary, tt.skipRest, tt.commands)
			}
		})
	}
}

// --rebuild-template on a template built from another image, with no
// linked clone: the new image replaces the old file, then the template is
// destroyed and created anew from it. In a dry run the rest of the build
// cannot be planned before that.
func TestTemplateRebuild(t *testing.T) {
	drifted := merge(imageParams9000, map[string]any{"sha256": sumB})
	listVMs := fake.Call{Line: "pvesh get /nodes/pve/qemu --output-format json", Result: fake.Out(`[{"vmid":9000},{"vmid":8101}]` + "\n")}
	clone := stateRead(8101, resized, "running", noSnapshots) // a full clone: its own disk
	storage := fake.Call{Line: readStorageLine, Result: fake.Out(storageWithImport)}
	downloadB := strings.ReplaceAll(downloadLine, sumA, sumB)
	createB := strings.ReplaceAll(createLine, sumA, sumB)
	destroy := "qm destroy 9000 --purge 1"

	node := fake.New(t)
	env := templateEnv(node, false, true)
	runSteps(t, env, node, []step{
		{kind: "vm_image", params: drifted,
			reads:    []fake.Call{stateRead(9000, template9000Built, "stopped", noSnapshots), listVMs, clone, storage, {Line: hashImageLine, Result: fake.Out(sumA + "  " + rigImage + "\n")}},
			action:   tasks.Create,
			summary:  "will replace " + rigImage,
			commands: []string{"rm -f -- " + rigImage, downloadB},
			apply:    []fake.Call{{Line: "rm -f -- " + rigImage}, {Line: downloadB, Result: fake.Out("calculating checksum...OK, checksum verified\n")}},
			after:    stateRead(9000, template9000Built, "stopped", noSnapshots),
			reread:   []fake.Call{listVMs, clone, storage, {Line: "test ! -e " + rigImage + " || sha256sum -- " + rigImage, Result: fake.Out(sumB + "  " + rigImage + "\n")}},
		},
		{kind: "vm_create", params: merge(createParams9000, map[string]any{"sha256": sumB}),
			reads:    []fake.Call{listVMs},
			action:   tasks.Create,
			summary:  "will rebuild template 9000 (built from image sha256 7dc470f8f719…, the config now says 0b5e1c3f2a49…): destroy it, then create vm 9000",
			commands: []string{destroy, createB},
			apply:    []fake.Call{{Line: destroy}, {Line: createB}},
			after:    stateRead(9000, with(created9000, "description", description(imageURL, sumB)), "stopped", noSnapshots),
		},
	})

	// The same in a dry run: planned, and the rest of the build skipped.
	node = fake.New(t, stateRead(9000, template9000Built, "stopped", noSnapshots), listVMs, clone, storage)
	c, err := newTask(t, "vm_create", merge(createParams9000, map[string]any{"sha256": sumB})).Check(context.Background(), templateEnv(node, true, true))
	if err != nil || c.Action != tasks.Create || c.SkipRest != "known once template 9000 is rebuilt" || !slices.Equal(c.Commands, []string{destroy, createB}) {
		t.Errorf("dry run = %s %q skip rest %q commands %q, %v", c.Action, c.Summary, c.SkipRest, c.Commands, err)
	}
}

// An interrupted build goes on: the VM exists (created, maybe running);
// vm_create leaves it, vm_template waits for the stop (a dry run says so,
// a real run refuses to convert a running VM).
func TestTemplateResumed(t *testing.T) {
	ctx := context.Background()
	running := stateRead(9000, provisioned9000, "running", noSnapshots)
	node := fake.New(t, running)
	env := templateEnv(node, false, false)
	if c, err := newTask(t, "vm_create", createParams9000).Check(ctx, env); err != nil || c.Pending() || c.Summary != "vm 9000 exists" {
		t.Errorf("vm_create = %s %q, %v; want none", c.Action, c.Summary, err)
	}
	if _, err := newTask(t, "vm_template", map[string]any{}).Check(ctx, env); err == nil || !strings.Contains(err.Error(), "vm 9000 is running: qm template needs it stopped") {
		t.Errorf("vm_template on a running VM: err = %v", err)
	}
	env.DryRun = true
	if c, err := newTask(t, "vm_template", map[string]any{}).Check(ctx, env); err != nil || c.Action != tasks.Unknown {
		t.Errorf("dry run vm_template on a running VM = %s %q, %v; want unknown", c.Action, c.Summary, err)
	}
	node.Expect(stateRead(9000, provisioned9000, "stopped", " `-> pre-features               2024-05-02 10:15:03     no-description\n  `-> current                                           You are here!\n"))
	env = templateEnv(node, false, false)
	if _, err := newTask(t, "vm_template", map[string]any{}).Check(ctx, env); err == nil || !strings.Contains(err.Error(), "has snapshots (pre-features): qm template refuses") {
		t.Errorf("vm_template with a snapshot: err = %v", err)
	}
}

// qm template exits 0 when its task fails: stderr is the failure.
func TestTemplateFailureOnStderr(t *testing.T) {
	node := fake.New(t, stateRead(9000, with(provisioned9000, "cicustom", ""), "stopped", noSnapshots))
	env := templateEnv(node, false, false)
	task := newTask(t, "vm_template", map[string]any{})
	c := checked(t, task, env)
	node.Expect(fake.Call{Line: templateLine, Result: outErr("", "lvrename 'pve/vm-9000-disk-0' error\n")})
	if err := task.Apply(context.Background(), env, c); err == nil || !strings.Contains(err.Error(), "lvrename") {
		t.Errorf("apply err = %v, want the stderr", err)
	}
}

// A wrong checksum fails the download step (download-url exits 0 and says so
// on stderr), before anything is created.
func TestImageWrongChecksum(t *testing.T) {
	node := fake.New(t, missingRead(9000), fake.Call{Line: readStorageLine, Result: fake.Out(storageWithImport)}, fake.Call{Line: hashImageLine})
	env := templateEnv(node, false, false)
	task := newTask(t, "vm_image", imageParams9000)
	c := checked(t, task, env)
	node.Expect(fake.Call{Line: downloadLine, Result: outErr("calculating checksum...\nUPID:pve:x:download:y:root@pam:\n",
		"checksum mismatch: got '"+sumB+"' != expect '"+sumA+"'\n")})
	if err := task.Apply(context.Background(), env, c); err == nil || !strings.Contains(err.Error(), "checksum mismatch: got '"+sumB) {
		t.Fatalf("apply err = %v, want the mismatch", err)
	}
}

// vm_clone of a source that is not there: a dry run building it first says
// what it will do; otherwise the error names the command that builds it.
func TestCloneSourceMissing(t *testing.T) {
	cfg := &inventory.Config{File: "phoenix_vm_configs.json", VMs: []*inventory.VM{{VMID: 9000, Name: "tpl", IsTemplate: true}, {VMID: 8101, Name: "web01", CloneFromVMID: 9000}}}
	for _, tc := range []struct {
		dryRun bool
		inRun  []int
		want   string
	}{
		{true, []int{9000, 8101}, "will clone vm 9000 to vm 8101 once this run has built it"},
		{true, []int{8101}, "clone source vm 9000 does not exist: it is template 9000 of phoenix_vm_configs.json; build it with `phoenix create 9000`, or add it to this run with --with-deps"},
		{false, []int{8101}, "clone source vm 9000 does not exist: it is template 9000 of phoenix_vm_configs.json; build it with `phoenix create 9000`"},
	} {
		node := fake.New(t, missingRead(8101), missingRead(9000))
		env := newEnv(node, tc.dryRun)
		env.Config, env.InRun = cfg, tc.inRun
		c, err := newTask(t, "vm_clone", map[string]any{"source": 9000}).Check(context.Background(), env)
		got := c.Summary
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("dry run %v, in run %v: %s %q, want %q", tc.dryRun, tc.inRun, c.Action, got, tc.want)
		}
	}
}

// outErr is a command that exits 0 with stderr, as pvesh and qm template do
// when their task failed.
func outErr(stdout, stderr string) transport.Result {
	return transport.Result{Stdout: []byte(stdout), Stderr: []byte(stderr)}
}

func TestParseStorageCfg(t *testing.T) {
	got := parseStorageCfg("# comment\ndir: local\n\tpath /var/lib/vz\n\tcontent iso,import\n\nnfs: nas\n        path /mnt/pve/nas\n        server 10.0.0.5\n        content images,iso\n\nzfspool: local-zfs\n\tpool rpool/data\n")
	if l := got["local"]; l.path != "/var/lib/vz" || !slices.Equal(l.content, []string{"iso", "import"}) {
		t.Errorf("local = %+v", l)
	}
	if n := got["nas"]; n.typ != "nfs" || n.path != "/mnt/pve/nas" {
		t.Errorf("nas = %+v", n)
	}
	if z := got["local-zfs"]; z.typ != "zfspool" || z.path != "" {
		t.Errorf("local-zfs = %+v", z)
	}
	if l := parseStorageCfg("")["local"]; l.path != "/var/lib/vz" || !slices.Contains(l.content, "iso") {
		t.Errorf("no storage.cfg: local = %+v, want the built-in one", l)
	}
}

// Without template_image_sha256 every plan warns, built or not.
func TestImageWarnsWithoutChecksum(t *testing.T) {
	node := fake.New(t, stateRead(9000, template9000Built, "stopped", noSnapshots))
	env := templateEnv(node, true, false)
	var logs []string
	env.Log = func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	c, err := newTask(t, "vm_image", merge(imageParams9000, map[string]any{"sha256": ""})).Check(context.Background(), env)
	if err != nil || c.SkipRest == "" || len(logs) != 1 || !strings.Contains(logs[0], "warning: template 9000: no template_image_sha256") {
		t.Errorf("check = %s %q, %v; logs %q", c.Action, c.Summary, err, logs)
	}
}
