package pve

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// Configs as qm prints them: template 9000, and VM 8101 at each step of create.
var (
	template9000 = map[string]string{
		"agent":    "enabled=1",
		"boot":     "order=scsi0",
		"cores":    "1",
		"ide2":     "local-lvm:vm-9000-cloudinit,media=cdrom",
		"memory":   "1024",
		"meta":     "creation-qemu=9.0.2,ctime=1717000000",
		"name":     "ubuntu-2404-template",
		"net0":     "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0",
		"scsi0":    "local-lvm:base-9000-disk-0,size=32G",
		"scsihw":   "virtio-scsi-pci",
		"smbios1":  "uuid=6f1c0000-0000-4000-8000-000000009000",
		"template": "1",
		"vmgenid":  "0b6e0000-0000-4000-8000-000000009000",
	}
	cloned = with(template9000, "template", "", "name", "web01",
		"ide2", "local-lvm:vm-8101-cloudinit,media=cdrom",
		"net0", "virtio=BC:24:11:12:34:56,bridge=vmbr0",
		"scsi0", "local-lvm:vm-8101-disk-0,size=32G",
		"smbios1", "uuid=6f1c0000-0000-4000-8000-000000008101")
	configured = with(cloned, "ciuser", "admin", "cores", "2", "memory", "2048", "onboot", "1",
		"ipconfig0", "ip=10.0.10.123/24,gw=10.0.10.1", "nameserver", "10.0.10.2",
		"searchdomain", "example.com", "sshkeys", encodedKeys)
	resized = with(configured, "scsi0", "local-lvm:vm-8101-disk-0,size=50G")
)

const (
	key1        = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPhx+k1 admin@laptop"
	key2        = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB/k2= ops@ci"
	encodedKeys = "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIPhx%2Bk1%20admin%40laptop%0Assh-rsa%20AAAAB3NzaC1yc2EAAAADAQAB%2Fk2%3D%20ops%40ci%0A"
	secretPW    = "hunter2 'quoted' pw"
	notExist    = "Configuration file 'nodes/pve/qemu-server/%d.conf' does not exist\n"
	lockTimeout = "can't lock file '/var/lock/qemu-server/lock-8101.conf' - got timeout\n"
	noSnapshots = "`-> current                                           You are here!\n"
	finalForm   = "`-> final-form                  2024-05-03 09:05:00     no-description\n" +
		" `-> current                                          You are here!\n"
)

// The parameters create.yml passes for VM 8101, as decoded from YAML/JSON.
var configParams8101 = map[string]any{
	"cores": float64(2), "memory": float64(2048), "onboot": true,
	"ip": "10.0.10.123/24", "gw": "10.0.10.1", "nameserver": "10.0.10.2", "searchdomain": "example.com",
	"ciuser": "admin", "sshkeys": []any{key1, key2},
}

// with copies m and sets key/value pairs; an empty value deletes the key.
func with(m map[string]string, kv ...string) map[string]string {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}

func render(cfg map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		b.WriteString(k + ": " + cfg[k] + "\n")
	}
	return b.String()
}

// stateRead is the one batched read of a VM's state from the node's files:
// its config file as Proxmox writes it (description first, then the keys
// sorted, then a section per snapshot) and, when it runs, its QEMU process.
func stateRead(vmid int, cfg map[string]string, status, snapshots string) fake.Call {
	return fake.BatchParallel(fileLines(vmid), append([]transport.Result{fake.Out(renderFile(cfg, snapshots))}, runRead(vmid, status)...)...)
}

// renderFile writes cfg (as qm config shows it) and the snapshots of a
// listsnapshot output as a config file.
func renderFile(cfg map[string]string, snapshots string) string {
	var b strings.Builder
	if d, ok := cfg["description"]; ok {
		b.WriteString("#" + d + "\n")
	}
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		if k != "description" {
			b.WriteString(k + ": " + cfg[k] + "\n")
		}
	}
	names, err := ParseSnapshots([]byte(snapshots))
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		b.WriteString("\n[" + n + "]\n" + render(cfg) + "snaptime: 1714727100\n")
	}
	return b.String()
}

// runRead is what the last lines of fileLines read of a VM: for a stopped
// one no pid file and no monitor socket; else a kvm started with the VM's
// pid file, and its status over QMP.
func runRead(vmid int, status string) []transport.Result {
	if status == "stopped" {
		return []transport.Result{
			fake.Fail(1, fmt.Sprintf("head: cannot open '/var/run/qemu-server/%d.pid' for reading: No such file or directory\n", vmid)),
			fake.Fail(1, ""),
		}
	}
	return []transport.Result{
		fake.Out(fmt.Sprintf("4242 (kvm) S 1 4242 4242 0 -1 4194560 0 0\n/usr/bin/kvm\n-id\n%d\n-pidfile\n/var/run/qemu-server/%d.pid\n-daemonize\n", vmid, vmid)),
		fake.Out(status + "\n"),
	}
}

func missingRead(vmid int) fake.Call {
	return fake.BatchParallel(fileLines(vmid), append([]transport.Result{fake.Fail(noConfig, "")}, runRead(vmid, "stopped")...)...)
}

// qmStateRead is a state read where the files cannot be read (not a
// Proxmox node's /etc/pve, or not root): qm config, status and
// listsnapshot then.
func qmStateRead(vmid int, config, status, snapshots transport.Result) []fake.Call {
	return []fake.Call{
		fake.BatchParallel(fileLines(vmid), append([]transport.Result{fake.Fail(2, "sh: 1: cd: can't cd to /etc/pve/qemu-server\n")}, runRead(vmid, "stopped")...)...),
		fake.BatchParallel(stateLines(vmid), config, status, snapshots),
	}
}

func newEnv(node *fake.Transport, dryRun bool) *tasks.Env {
	return &tasks.Env{VM: &inventory.VM{VMID: 8101, Name: "web01"}, Node: node, DryRun: dryRun}
}

// newTask builds a registered task with retries that do not wait.
func newTask(t *testing.T, kind string, params map[string]any) tasks.Task {
	t.Helper()
	reg := tasks.Registry{}
	register(reg, qm{backoff: make([]time.Duration, 4), rand: saltBytes()})
	task, err := reg[kind](params)
	if err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return probesChecked{task, t}
}

// probesChecked checks its task as the runner does: the node runs only
// commands marked as probes while the task checks.
type probesChecked struct {
	tasks.Task
	t *testing.T
}

func (p probesChecked) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	node, cluster := env.Node, env.Cluster
	env.Node = probesOnly{node, p.t}
	if cluster != nil {
		env.Cluster = probesOnlyCluster{cluster, p.t}
	}
	defer func() { env.Node, env.Cluster = node, cluster }()
	return p.Task.Check(ctx, env)
}

// probesOnlyCluster holds the cluster's other nodes to probes too.
type probesOnlyCluster struct {
	tasks.Cluster
	t *testing.T
}

func (p probesOnlyCluster) Node(ctx context.Context, name string) (transport.Transport, error) {
	n, err := p.Cluster.Node(ctx, name)
	if err != nil {
		return nil, err
	}
	return probesOnly{n, p.t}, nil
}

type probesOnly struct {
	transport.Transport
	t *testing.T
}

func (p probesOnly) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if !cmd.Probe {
		p.t.Errorf("a check ran a command not marked as a probe: %s", cmd.Printable())
		return transport.Result{}, transport.ErrReadOnly
	}
	return p.Transport.Run(ctx, cmd)
}

func TestRegisterKinds(t *testing.T) {
	reg := tasks.Registry{}
	Register(reg)
	want := []string{"vm_clone", "vm_config", "vm_create", "vm_destroy", "vm_disk", "vm_firewall", "vm_image", "vm_place", "vm_snapshot", "vm_start", "vm_stop", "vm_template"}
	if got := reg.Kinds(); !slices.Equal(got, want) {
		t.Fatalf("kinds = %v, want %v", got, want)
	}
	bad := []struct {
		kind   string
		params map[string]any
	}{
		{"vm_config", map[string]any{"bridge_name": "vmbr0"}},
		{"vm_config", map[string]any{"gw": "10.0.0.1"}},
		{"vm_clone", map[string]any{"name": "web01"}},
		{"vm_clone", map[string]any{"source": 9000, "full": false, "storage": "local-zfs"}},
		{"vm_disk", map[string]any{"disk": "scsi0; rm -rf /", "size_gb": 50}},
		{"vm_stop", map[string]any{"timeout_seconds": 0}},
		{"vm_snapshot", map[string]any{"name": "current"}},
		{"vm_snapshot", map[string]any{"name": "final form"}},
		{"vm_snapshot", map[string]any{"name": "x"}},
	}
	for _, b := range bad {
		if _, err := reg[b.kind](b.params); err == nil {
			t.Errorf("%s %v: accepted", b.kind, b.params)
		}
	}
}

// TestCreateSequence runs create for VM 8101 over a fresh node as the runner
// does: check, apply, forget the node state, check again (must be none).
func TestCreateSequence(t *testing.T) {
	ctx := context.Background()
	steps := []struct {
		kind     string
		params   map[string]any
		action   tasks.Action
		commands []string
		diff     string
		apply    fake.Call
		after    fake.Call
	}{
		{
			kind: "vm_clone", params: map[string]any{"source": float64(9000), "name": "web01"},
			action:   tasks.Create,
			commands: []string{"qm clone 9000 8101 --name web01 --full 1"},
			apply:    fake.Call{Line: "qm clone 9000 8101 --name web01 --full 1", Result: fake.Out("create full clone of drive scsi0 (local-lvm:base-9000-disk-0)\n")},
			after:    stateRead(8101, cloned, "stopped", noSnapshots),
		},
		{
			kind: "vm_config", params: configParams8101,
			action:   tasks.Update,
			commands: []string{"qm set 8101 --ciuser admin --cores 2 --ipconfig0 'ip=10.0.10.123/24,gw=10.0.10.1' --memory 2048 --nameserver 10.0.10.2 --onboot 1 --searchdomain example.com --sshkeys /dev/stdin"},
			diff: "--- vm 8101 qm config\n+++ vm 8101 wanted\n" +
				"+ ciuser: admin\n- cores: 1\n+ cores: 2\n+ ipconfig0: ip=10.0.10.123/24,gw=10.0.10.1\n" +
				"- memory: 1024\n+ memory: 2048\n+ nameserver: 10.0.10.2\n+ onboot: 1\n+ searchdomain: example.com\n" +
				"+ sshkeys: " + key1 + "\n+ sshkeys: " + key2 + "\n",
			apply: fake.Call{Line: "qm set 8101 --ciuser admin --cores 2 --ipconfig0 'ip=10.0.10.123/24,gw=10.0.10.1' --memory 2048 --nameserver 10.0.10.2 --onboot 1 --searchdomain example.com --sshkeys /dev/stdin",
				Stdin: key1 + "\n" + key2 + "\n", Result: fake.Out("update VM 8101: -ciuser admin -cores 2\n")},
			after: stateRead(8101, configured, "stopped", noSnapshots),
		},
		{
			kind: "vm_disk", params: map[string]any{"size_gb": float64(50)},
			action:   tasks.Update,
			commands: []string{"qm resize 8101 scsi0 50G"},
			diff:     "- scsi0 size: 32G\n+ scsi0 size: 50G\n",
			apply:    fake.Call{Line: "qm resize 8101 scsi0 50G", Result: fake.Out("  Size of logical volume pve/vm-8101-disk-0 changed from 32.00 GiB to 50.00 GiB.\n")},
			after:    stateRead(8101, resized, "stopped", noSnapshots),
		},
		{
			kind: "vm_start", params: map[string]any{},
			action:   tasks.Update,
			commands: []string{"qm start 8101"},
			apply:    fake.Call{Line: "qm start 8101", Result: fake.Out("generating cloud-init ISO\n")},
			after:    stateRead(8101, resized, "running", noSnapshots),
		},
		{
			kind: "vm_snapshot", params: map[string]any{"name": "final-form"},
			action:   tasks.Create,
			commands: []string{"qm snapshot 8101 final-form"},
			diff:     "+ snapshot: final-form\n",
			apply:    fake.Call{Line: "qm snapshot 8101 final-form", Result: fake.Out("snapshotting 'drive-scsi0' (local-lvm:vm-8101-disk-0)\n")},
			after:    stateRead(8101, resized, "running", finalForm),
		},
	}
	node := fake.New(t, missingRead(8101), stateRead(9000, template9000, "stopped", noSnapshots))
	env := newEnv(node, false)
	for _, s := range steps {
		task := newTask(t, s.kind, s.params)
		c, err := task.Check(ctx, env)
		if err != nil {
			t.Fatalf("%s check: %v", s.kind, err)
		}
		if c.Action != s.action || !slices.Equal(c.Commands, s.commands) || c.Diff != s.diff {
			t.Fatalf("%s check = %s %q\ncommands %q\ndiff:\n%s\nwant %s %q\ndiff:\n%s", s.kind, c.Action, c.Summary, c.Commands, c.Diff, s.action, s.commands, s.diff)
		}
		node.Expect(s.apply)
		if err := task.Apply(ctx, env, c); err != nil {
			t.Fatalf("%s apply: %v", s.kind, err)
		}
		env.Forget("pve:")
		node.Expect(s.after)
		if c, err := task.Check(ctx, env); err != nil || c.Pending() {
			t.Fatalf("%s re-check = %s %q, %v; want none", s.kind, c.Action, c.Summary, err)
		}
	}
	var writes []string
	for _, l := range node.Lines {
		if strings.HasPrefix(l, "qm ") {
			writes = append(writes, strings.Fields(l)[1])
		}
	}
	if want := []string{"clone", "set", "resize", "start", "snapshot"}; !slices.Equal(writes, want) {
		t.Errorf("qm writes = %v, want %v", writes, want)
	}
}

// TestCreateOnMatchingState: a second create reads the VM's state once and
// writes nothing (the strict fake fails on any other command).
func TestCreateOnMatchingState(t *testing.T) {
	node := fake.New(t, stateRead(8101, resized, "running", finalForm))
	env := newEnv(node, false)
	for _, kt := range []struct {
		kind   string
		params map[string]any
	}{
		{"vm_clone", map[string]any{"source": float64(9000), "name": "web01"}},
		{"vm_config", configParams8101},
		{"vm_disk", map[string]any{"size_gb": float64(50)}},
		{"vm_start", map[string]any{}},
		{"vm_snapshot", map[string]any{"name": "final-form"}},
	} {
		c, err := newTask(t, kt.kind, kt.params).Check(context.Background(), env)
		if err != nil || c.Action != tasks.None || c.Summary == "" || len(c.Commands) != 0 {
			t.Errorf("%s = %s %q %q, %v; want none with a reason", kt.kind, c.Action, c.Summary, c.Commands, err)
		}
	}
	if len(node.Lines) != 1 {
		t.Errorf("ran %d commands, want 1 batched read", len(node.Lines))
	}
}

// TestDryRunOnFreshNode: with the clone pending, later node tasks cannot know
// their outcome and say what they will do.
func TestDryRunOnFreshNode(t *testing.T) {
	node := fake.New(t, missingRead(8101), stateRead(9000, template9000, "stopped", noSnapshots))
	env := newEnv(node, true)
	tests := []struct {
		kind    string
		params  map[string]any
		action  tasks.Action
		summary string
	}{
		{"vm_clone", map[string]any{"source": float64(9000), "name": "web01"}, tasks.Create, `will clone template 9000 to vm 8101 "web01" (full copy)`},
		{"vm_config", configParams8101, tasks.Unknown, "vm 8101 does not exist yet; will set ciuser, cores, ipconfig0, memory, nameserver, onboot, searchdomain, sshkeys"},
		{"vm_disk", map[string]any{"size_gb": float64(50)}, tasks.Unknown, "vm 8101 does not exist yet; scsi0 will be grown to 50G if smaller"},
		{"vm_start", map[string]any{}, tasks.Unknown, "vm 8101 does not exist yet; will start it"},
		{"vm_snapshot", map[string]any{"name": "final-form"}, tasks.Unknown, "vm 8101 does not exist yet; will take snapshot final-form"},
		{"vm_stop", map[string]any{}, tasks.None, "vm 8101 does not exist"},
		{"vm_destroy", map[string]any{}, tasks.None, "vm 8101 does not exist"},
	}
	for _, tt := range tests {
		c, err := newTask(t, tt.kind, tt.params).Check(context.Background(), env)
		if err != nil || c.Action != tt.action || c.Summary != tt.summary {
			t.Errorf("%s = %s %q, %v\nwant %s %q", tt.kind, c.Action, c.Summary, err, tt.action, tt.summary)
		}
	}
}

// TestCheck covers each task's decision on one state read.
func TestCheck(t *testing.T) {
	running := stateRead(8101, resized, "running", finalForm)
	stopped := stateRead(8101, resized, "stopped", noSnapshots)
	tests := []struct {
		name     string
		kind     string
		params   map[string]any
		reads    []fake.Call
		action   tasks.Action
		summary  string // substring
		done     string // exactly, when set
		commands []string
		err      string // substring
	}{
		// vm_clone
		{name: "clone: exists", kind: "vm_clone", params: map[string]any{"source": 9000}, reads: []fake.Call{stopped},
			action: tasks.None, summary: "vm 8101 exists"},
		// What an interrupted clone leaves (qm.md §4.5): the temp config, locked.
		{name: "clone: a half-made clone is not done", kind: "vm_clone", params: map[string]any{"source": 9000},
			reads: []fake.Call{stateRead(8101, map[string]string{"description": "qmclone temporary file", "lock": "clone"}, "stopped", noSnapshots)},
			err:   "vm 8101 exists but holds lock: clone: a clone that did not finish (interrupted, or still running elsewhere); phoenix never unlocks a VM. If no clone is running, remove the half-made VM and run again: qm destroy 8101 --skiplock 1 --destroy-unreferenced-disks 1; qm unlock 8101 only if you know the clone completed"},
		{name: "clone: a half-made create is not done", kind: "vm_clone", params: map[string]any{"source": 9000},
			reads: []fake.Call{stateRead(8101, with(cloned, "lock", "create"), "stopped", noSnapshots)},
			err:   "vm 8101 exists but holds lock: create: a create that did not finish"},
		{name: "clone: a backup lock is no half-made VM", kind: "vm_clone", params: map[string]any{"source": 9000},
			reads:  []fake.Call{stateRead(8101, with(cloned, "lock", "backup"), "running", noSnapshots)},
			action: tasks.None, summary: "vm 8101 exists"},
		{name: "clone: source missing", kind: "vm_clone", params: map[string]any{"source": 9000},
			reads: []fake.Call{missingRead(8101), missingRead(9000)}, err: "clone source vm 9000 does not exist"},
		{name: "clone: source running", kind: "vm_clone", params: map[string]any{"source": 9000},
			reads: []fake.Call{missingRead(8101), stateRead(9000, with(template9000, "template", ""), "running", noSnapshots)},
			err:   "clone source vm 9000 is running: clone needs a template or a stopped VM"},
		{name: "clone: stopped vm to other storage", kind: "vm_clone", params: map[string]any{"source": 9000, "name": "web01", "storage": "local-zfs"},
			reads:  []fake.Call{missingRead(8101), stateRead(9000, with(template9000, "template", ""), "stopped", noSnapshots)},
			action: tasks.Create, summary: "clone stopped vm 9000", commands: []string{"qm clone 9000 8101 --name web01 --full 1 --storage local-zfs"}},
		{name: "clone: linked", kind: "vm_clone", params: map[string]any{"source": 9000, "full": false},
			reads:  []fake.Call{missingRead(8101), stateRead(9000, template9000, "stopped", noSnapshots)},
			action: tasks.Create, summary: "(linked clone)", commands: []string{"qm clone 9000 8101 --full 0"}},
		{name: "state: status fails on an existing vm", kind: "vm_start", params: map[string]any{},
			reads: qmStateRead(8101, fake.Out(render(resized)), fake.Fail(255, "VM 8101 qmp command 'query-status' failed - got timeout\n"), fake.Out(noSnapshots)),
			err:   `read state of vm 8101: run "qm status 8101": exit 255: VM 8101 qmp command`},
		{name: "clone: node error is not 'missing'", kind: "vm_clone", params: map[string]any{"source": 9000},
			reads: qmStateRead(8101, fake.Fail(255, "cluster not ready - no quorum?\n"), fake.Fail(255, ""), fake.Fail(255, "")),
			err:   "no quorum"},
		{name: "state: qm says missing when the files cannot be read", kind: "vm_clone", params: map[string]any{"source": 9000},
			reads: append(qmStateRead(8101, fake.Fail(2, fmt.Sprintf(notExist, 8101)), fake.Fail(2, ""), fake.Fail(2, "")),
				stateRead(9000, template9000, "stopped", noSnapshots)),
			action: tasks.Create, summary: "clone template 9000", commands: []string{"qm clone 9000 8101 --full 1"}},

		// vm_config
		{name: "config: same values, other spellings", kind: "vm_config",
			params: merge(configParams8101, map[string]any{"agent": "enabled=1", "onboot": false, "bridge": "vmbr0"}),
			reads: []fake.Call{stateRead(8101, with(configured, "agent", "1", "onboot", "", "memory", "current=2048",
				"ipconfig0", "gw=10.0.10.1,ip=10.0.10.123/24",
				"sshkeys", "ssh-rsa%20AAAAB3NzaC1yc2EAAAADAQAB%2Fk2%3D%20ops%40ci%0A%0Assh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIPhx%2Bk1%20admin%40laptop"),
				"stopped", noSnapshots)},
			action: tasks.None, summary: "config matches"},
		{name: "config: one key differs", kind: "vm_config", params: configParams8101,
			reads:  []fake.Call{stateRead(8101, with(configured, "cores", "4"), "running", noSnapshots)},
			action: tasks.Update, summary: "will set cores; cores take effect at the next VM start", done: "set cores; cores take effect at the next VM start",
			commands: []string{"qm set 8101 --cores 2"}},
		{name: "config: bridge moves, MAC stays", kind: "vm_config", params: map[string]any{"bridge": "vmbr1"},
			reads:  []fake.Call{stopped},
			action: tasks.Update, commands: []string{"qm set 8101 --net0 'virtio=BC:24:11:12:34:56,bridge=vmbr1'"}},
		{name: "config: boot order as the original", kind: "vm_config", params: map[string]any{"boot_order": 2, "boot_delay": 5},
			reads:  []fake.Call{stopped},
			action: tasks.Update, commands: []string{"qm set 8101 --boot 'order=scsi0;net0' --startup 'order=2,up=5'"}},
		{name: "config: boot_delay alone is ignored", kind: "vm_config", params: map[string]any{"boot_delay": 5},
			action: tasks.None, summary: "no config keys given"},
		{name: "config: dhcp, agent, cicustom", kind: "vm_config",
			params: map[string]any{"ip": "dhcp", "agent": "enabled=1", "cicustom": "vendor=local:snippets/phoenix-8101-hostkey.yml"},
			reads:  []fake.Call{stateRead(8101, with(cloned, "agent", "0"), "stopped", noSnapshots)},
			action: tasks.Update, commands: []string{"qm set 8101 --agent 'enabled=1' --cicustom 'vendor=local:snippets/phoenix-8101-hostkey.yml' --ipconfig0 'ip=dhcp'"}},
		{name: "config: keys as one multi-line entry", kind: "vm_config", params: map[string]any{"sshkeys": []any{"\n" + key2 + "\n\n  " + key1 + "\n"}},
			reads: []fake.Call{stopped}, action: tasks.None, summary: "config matches: sshkeys"},
		{name: "config: a key removed from sshkeys", kind: "vm_config", params: map[string]any{"sshkeys": []any{key1}},
			reads:  []fake.Call{stopped},
			action: tasks.Update, summary: "set sshkeys", commands: []string{"qm set 8101 --sshkeys /dev/stdin"}},
		{name: "config: stored password is kept", kind: "vm_config", params: map[string]any{"cipassword": secretPW},
			reads:  []fake.Call{stateRead(8101, with(configured, "cipassword", pveSHA256), "stopped", noSnapshots)},
			action: tasks.None},
		{name: "config: vm missing in a real run", kind: "vm_config", params: configParams8101,
			reads: []fake.Call{missingRead(8101)}, err: "vm 8101 does not exist"},

		// vm_disk
		{name: "disk: never shrunk", kind: "vm_disk", params: map[string]any{"size_gb": 50},
			reads:  []fake.Call{stateRead(8101, with(resized, "scsi0", "local-lvm:vm-8101-disk-0,size=60G"), "stopped", noSnapshots)},
			action: tasks.None, summary: "disk scsi0 is 60G, larger than 50G; never shrunk"},
		{name: "disk: other disk", kind: "vm_disk", params: map[string]any{"disk": "virtio1", "size_gb": 20},
			reads:  []fake.Call{stateRead(8101, with(resized, "virtio1", "local-lvm:vm-8101-disk-1,size=512M"), "stopped", noSnapshots)},
			action: tasks.Update, summary: "will grow virtio1 from 512M to 20G", done: "grew virtio1 from 512M to 20G", commands: []string{"qm resize 8101 virtio1 20G"}},
		{name: "disk: no such disk", kind: "vm_disk", params: map[string]any{"disk": "scsi1", "size_gb": 50},
			reads: []fake.Call{stopped}, err: "no disk scsi1"},
		{name: "disk: no size reads nothing", kind: "vm_disk", params: map[string]any{},
			action: tasks.None, summary: "no size given"},

		// vm_start
		{name: "start: running", kind: "vm_start", params: map[string]any{}, reads: []fake.Call{running},
			action: tasks.None, summary: "vm 8101 is running"},
		{name: "start: template", kind: "vm_start", params: map[string]any{},
			reads: []fake.Call{stateRead(8101, with(resized, "template", "1"), "stopped", noSnapshots)}, err: "is a template"},
		{name: "start: paused", kind: "vm_start", params: map[string]any{},
			reads: []fake.Call{stateRead(8101, resized, "paused", noSnapshots)}, err: "vm 8101 is paused"},

		// vm_stop
		{name: "stop: graceful first", kind: "vm_stop", params: map[string]any{}, reads: []fake.Call{running},
			action: tasks.Update, summary: "qm stop only if that times out", done: "stopped vm 8101",
			commands: []string{"qm shutdown 8101 --timeout 60", "qm stop 8101"}},
		{name: "stop: timeout", kind: "vm_stop", params: map[string]any{"timeout_seconds": 180}, reads: []fake.Call{running},
			action: tasks.Update, commands: []string{"qm shutdown 8101 --timeout 180", "qm stop 8101"}},
		{name: "stop: force", kind: "vm_stop", params: map[string]any{"force": true}, reads: []fake.Call{running},
			action: tasks.Update, summary: "hard stop", commands: []string{"qm stop 8101"}},
		{name: "stop: paused cannot shut down", kind: "vm_stop", params: map[string]any{},
			reads:  []fake.Call{stateRead(8101, resized, "paused", noSnapshots)},
			action: tasks.Update, commands: []string{"qm stop 8101"}},
		{name: "stop: stopped", kind: "vm_stop", params: map[string]any{}, reads: []fake.Call{stopped},
			action: tasks.None, summary: "vm 8101 is stopped"},

		// vm_snapshot
		{name: "snapshot: exact name, not a prefix", kind: "vm_snapshot", params: map[string]any{"name": "final"}, reads: []fake.Call{running},
			action: tasks.Create, summary: "will take snapshot final", done: "took snapshot final", commands: []string{"qm snapshot 8101 final"}},
		{name: "snapshot: longer name than an existing one", kind: "vm_snapshot", params: map[string]any{"name": "final-form-2", "description": "after features"},
			reads:  []fake.Call{running},
			action: tasks.Create, commands: []string{"qm snapshot 8101 final-form-2 --description 'after features'"}},
		{name: "snapshot: disabled reads nothing", kind: "vm_snapshot", params: map[string]any{"name": ""},
			action: tasks.None, summary: "disabled"},
		{name: "snapshot: template", kind: "vm_snapshot", params: map[string]any{"name": "golden"},
			reads: []fake.Call{stateRead(8101, with(resized, "template", "1"), "stopped", noSnapshots)}, err: "templates cannot be snapshotted"},

		// vm_destroy
		{name: "destroy: running is stopped first", kind: "vm_destroy", params: map[string]any{}, reads: []fake.Call{running},
			action: tasks.Delete, summary: `will destroy vm 8101 "web01" (running), stopping it hard first with qm stop`,
			done:     `destroyed vm 8101 "web01" (running), stopped hard first`,
			commands: []string{"qm stop 8101", "qm destroy 8101 --purge 1"}},
		{name: "destroy: stopped, no purge", kind: "vm_destroy", params: map[string]any{"purge": false}, reads: []fake.Call{stopped},
			action: tasks.Delete, commands: []string{"qm destroy 8101 --purge 0"}},
		{name: "destroy: missing", kind: "vm_destroy", params: map[string]any{}, reads: []fake.Call{missingRead(8101)},
			action: tasks.None, summary: "vm 8101 does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := fake.New(t, tt.reads...)
			c, err := newTask(t, tt.kind, tt.params).Check(context.Background(), newEnv(node, false))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Action != tt.action || !strings.Contains(c.Summary, tt.summary) || !slices.Equal(c.Commands, tt.commands) {
				t.Errorf("got %s %q %q\nwant %s %q %q", c.Action, c.Summary, c.Commands, tt.action, tt.summary, tt.commands)
			}
			// A plan is in the future tense, what was done in the past.
			if c.Pending() && (!strings.HasPrefix(c.Summary, "will ") || c.Done == "" || strings.Contains(c.Done, "will ") || tt.done != "" && c.Done != tt.done) {
				t.Errorf("plan %q, done %q; want \"will …\" and the past tense %q", c.Summary, c.Done, tt.done)
			}
		})
	}
}

func merge(a, b map[string]any) map[string]any {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// checked runs Check on node and fails the test unless a change is pending.
func checked(t *testing.T, task tasks.Task, env *tasks.Env) tasks.Change {
	t.Helper()
	c, err := task.Check(context.Background(), env)
	if err != nil || !c.Pending() {
		t.Fatalf("check = %s %q, %v; want a pending change", c.Action, c.Summary, err)
	}
	return c
}

const setCores = "qm set 8101 --cores 2"

func TestApply(t *testing.T) {
	lockFail := fake.Fail(255, lockTimeout)
	tests := []struct {
		name   string
		kind   string
		params map[string]any
		state  fake.Call
		calls  []fake.Call
		err    string // substring; "" = success
	}{
		{name: "lock timeout twice, then success", kind: "vm_config", params: map[string]any{"cores": 2},
			state: stateRead(8101, cloned, "stopped", noSnapshots),
			calls: []fake.Call{{Line: setCores, Result: lockFail}, {Line: setCores, Result: lockFail}, {Line: setCores, Result: fake.Out("update VM 8101: -cores 2\n")}}},
		{name: "lock timeout five times", kind: "vm_config", params: map[string]any{"cores": 2},
			state: stateRead(8101, cloned, "stopped", noSnapshots),
			calls: slices.Repeat([]fake.Call{{Line: setCores, Result: lockFail}}, 5),
			err:   "vm lock still busy after 5 tries: run \"qm set 8101 --cores 2\": exit 255: can't lock file"},
		{name: "config lock is named, never retried", kind: "vm_start", params: map[string]any{},
			state: stateRead(8101, resized, "stopped", noSnapshots),
			calls: []fake.Call{{Line: "qm start 8101", Result: fake.Fail(255, "VM is locked (backup)\n")}},
			err:   "vm is locked (backup): phoenix never unlocks a VM; wait for the backup to end, or run qm unlock 8101 if none is running: run \"qm start 8101\": exit 255: VM is locked (backup)"},
		{name: "a clone lock says how to clean up", kind: "vm_config", params: map[string]any{"cores": 2},
			state: stateRead(8101, cloned, "stopped", noSnapshots),
			calls: []fake.Call{{Line: setCores, Result: fake.Fail(255, "VM is locked (clone)\n")}},
			err:   "vm is locked (clone): a clone that did not finish (interrupted, or still running elsewhere); phoenix never unlocks a VM. If no clone is running, remove the half-made VM and run again: qm destroy 8101 --skiplock 1"},
		{name: "already running counts as started", kind: "vm_start", params: map[string]any{},
			state: stateRead(8101, resized, "stopped", noSnapshots),
			calls: []fake.Call{{Line: "qm start 8101", Result: fake.Fail(255, "VM 8101 already running\n")}}},
		{name: "start failure keeps stderr", kind: "vm_start", params: map[string]any{},
			state: stateRead(8101, resized, "stopped", noSnapshots),
			calls: []fake.Call{{Line: "qm start 8101", Result: fake.Fail(255, "can't find file 'local:snippets/x.yml'\n")}},
			err:   `run "qm start 8101": exit 255: can't find file 'local:snippets/x.yml'`},
		{name: "resize exit 0 with stderr is a failure", kind: "vm_disk", params: map[string]any{"size_gb": 50},
			state: stateRead(8101, configured, "stopped", noSnapshots),
			calls: []fake.Call{{Line: "qm resize 8101 scsi0 50G", Result: transport.Result{Stderr: []byte("shrinking disks is not supported\n")}}},
			err:   "shrinking disks is not supported"},
		{name: "resize exit 0 with a lock timeout is retried", kind: "vm_disk", params: map[string]any{"size_gb": 50},
			state: stateRead(8101, configured, "stopped", noSnapshots),
			calls: []fake.Call{
				{Line: "qm resize 8101 scsi0 50G", Result: transport.Result{Stderr: []byte(lockTimeout)}},
				{Line: "qm resize 8101 scsi0 50G"},
			}},
		{name: "resize warnings are not failures", kind: "vm_disk", params: map[string]any{"size_gb": 50},
			state: stateRead(8101, configured, "stopped", noSnapshots),
			calls: []fake.Call{{Line: "qm resize 8101 scsi0 50G", Result: transport.Result{Stderr: []byte("Task finished with 1 warning(s)!\n")}}}},
		{name: "shutdown timeout escalates to stop", kind: "vm_stop", params: map[string]any{},
			state: stateRead(8101, resized, "running", noSnapshots),
			calls: []fake.Call{
				{Line: "qm shutdown 8101 --timeout 60", Result: fake.Fail(255, "VM quit/powerdown failed - got timeout\n")},
				{Line: "qm stop 8101", Result: fake.Out("VM still running - terminating now with SIGTERM\n")},
			}},
		{name: "other shutdown failure does not stop", kind: "vm_stop", params: map[string]any{},
			state: stateRead(8101, resized, "running", noSnapshots),
			calls: []fake.Call{{Line: "qm shutdown 8101 --timeout 60", Result: fake.Fail(255, "VM is paused - cannot shutdown\n")}},
			err:   "VM is paused - cannot shutdown"},
		{name: "destroy a running vm", kind: "vm_destroy", params: map[string]any{},
			state: stateRead(8101, resized, "running", finalForm),
			calls: []fake.Call{{Line: "qm stop 8101"}, {Line: "qm destroy 8101 --purge 1", Result: fake.Out("purging VM 8101 from related configurations..\n")}}},
		{name: "destroy refused stops there", kind: "vm_destroy", params: map[string]any{},
			state: stateRead(8101, resized, "stopped", noSnapshots),
			calls: []fake.Call{{Line: "qm destroy 8101 --purge 1", Result: fake.Fail(255, "can't remove VM 8101 - protection mode enabled\n")}},
			err:   "protection mode enabled"},
		{name: "connection lost names the command", kind: "vm_start", params: map[string]any{},
			state: stateRead(8101, resized, "stopped", noSnapshots),
			calls: []fake.Call{{Line: "qm start 8101", Err: transport.ErrDisconnected}},
			err:   `run "qm start 8101": connection lost`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := fake.New(t, tt.state)
			env := newEnv(node, false)
			task := newTask(t, tt.kind, tt.params)
			c := checked(t, task, env)
			node.Expect(tt.calls...)
			err := task.Apply(context.Background(), env, c)
			if tt.err == "" && err != nil {
				t.Fatalf("apply: %v", err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("apply err = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestApplyNeedsThePlan(t *testing.T) {
	task := newTask(t, "vm_start", map[string]any{})
	err := task.Apply(context.Background(), newEnv(fake.New(t), false), tasks.Change{Action: tasks.Update})
	if err == nil {
		t.Fatal("apply without a plan: no error")
	}
}

func TestLockRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	node := fake.New(t, fake.Call{Line: setCores, Result: fake.Fail(255, lockTimeout)})
	q := qm{backoff: []time.Duration{time.Hour}}
	err := q.run(ctx, newEnv(node, false), call{argv: qmArgs("set", 8101, "--cores", "2")})
	if err == nil || !strings.Contains(err.Error(), "retry cancelled") {
		t.Fatalf("err = %v, want the retry cancelled", err)
	}
}

// TestSecretsNeverShown: the password reaches qm, and nothing a person reads.
func TestSecretsNeverShown(t *testing.T) {
	node := fake.New(t, stateRead(8101, cloned, "stopped", noSnapshots))
	env := newEnv(node, false)
	task := newTask(t, "vm_config", map[string]any{"cipassword": inventory.Secret(secretPW), "ciuser": "admin"})
	c := checked(t, task, env)
	shown := c.Summary + c.Diff + strings.Join(c.Commands, "\n")
	for _, part := range []string{secretPW, "hunter2", "quoted"} {
		if strings.Contains(shown, part) {
			t.Errorf("secret part %q shown:\n%s", part, shown)
		}
	}
	if want := []string{"qm set 8101 --cipassword ******** --ciuser admin"}; !slices.Equal(c.Commands, want) {
		t.Errorf("commands = %q, want %q", c.Commands, want)
	}
	if !strings.Contains(c.Diff, "+ cipassword: ********\n") {
		t.Errorf("diff does not show the masked password:\n%s", c.Diff)
	}
	// The real line carries the password's hash, quoted; the error shown does not.
	node.Expect(fake.Call{Line: `qm set 8101 --cipassword '` + glibcSHA512 + `' --ciuser admin`, Result: fake.Fail(255, "VM is locked (clone)\n")})
	err := task.Apply(context.Background(), env, c)
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), glibcSHA512) || !strings.Contains(err.Error(), "********") {
		t.Errorf("apply error = %v; want a masked failure", err)
	}
}

// deadlineNode answers the state read of a missing VM and records whether
// the read had a deadline.
type deadlineNode struct{ bounded bool }

func (d *deadlineNode) Run(ctx context.Context, _ transport.Cmd) (transport.Result, error) {
	_, d.bounded = ctx.Deadline()
	return missingRead(8101).Result, nil
}

// A state read that hangs (pmxcfs without quorum) ends: it has a deadline.
func TestStateReadIsBounded(t *testing.T) {
	node := &deadlineNode{}
	st, err := readState(context.Background(), node, 8101)
	if err != nil || st.Exists {
		t.Fatalf("state %+v, %v; want a missing VM", st, err)
	}
	if !node.bounded {
		t.Error("state read without a deadline")
	}
}

// TestReadStates reads four VMs' files in one round trip: a stopped
// template, a running VM, a missing one, and one whose config cannot be
// read, asked through qm in a second round trip (where its status fails).
func TestReadStates(t *testing.T) {
	var lines []string
	for _, id := range []int{9000, 8101, 8102, 8103} {
		lines = append(lines, fileLines(id)...)
	}
	var results []transport.Result
	results = append(append(results, fake.Out(renderFile(template9000, noSnapshots))), runRead(9000, "stopped")...)
	results = append(append(results, fake.Out(renderFile(resized, finalForm))), runRead(8101, "running")...)
	results = append(append(results, fake.Fail(noConfig, "")), runRead(8102, "stopped")...)
	results = append(append(results, fake.Fail(1, "cat: 8103.conf: Permission denied\n")), runRead(8103, "stopped")...)
	node := fake.New(t, fake.Batch(lines, results...), fake.Batch(stateLines(8103),
		fake.Out(render(resized)), fake.Fail(255, "VM 8103 qmp command 'query-status' failed - got timeout\n"), fake.Out(noSnapshots)))
	states, errs, err := ReadStates(context.Background(), node, []int{9000, 8101, 8102, 8103})
	if err != nil {
		t.Fatal(err)
	}
	if st := states[9000]; st == nil || !st.Exists || !st.Template() || st.Status != "stopped" {
		t.Errorf("9000: %+v", st)
	}
	if st := states[8101]; st == nil || !st.Exists || st.Template() || st.Status != "running" || !st.HasSnapshot("final-form") {
		t.Errorf("8101: %+v", st)
	}
	if st := states[8102]; st == nil || st.Exists {
		t.Errorf("8102: %+v, want missing", st)
	}
	if err := errs[8103]; err == nil || !strings.Contains(err.Error(), "read state of vm 8103") || states[8103] != nil {
		t.Errorf("8103: %v, %+v", err, states[8103])
	}
	if len(node.Lines) != 2 {
		t.Errorf("%d round trips, want 2", len(node.Lines))
	}
}
