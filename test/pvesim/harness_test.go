package pvesim

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// fakeBackend records what pvesim asks of Docker and keeps container state.
type fakeBackend struct {
	mu       sync.Mutex
	guests   map[string]*fakeGuest
	disks    map[string]string // ref -> content (a description of where it came from)
	nextPID  int
	calls    []string
	hangStop bool // Shutdown times out (the guest ignores SIGTERM)
	// importing, when set, holds every ImportDisk until it is closed.
	importing chan struct{}
}

type fakeGuest struct {
	spec    Guest
	running bool
	pid     int
	starts  int
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{guests: map[string]*fakeGuest{}, disks: map[string]string{}, nextPID: 30000}
}

func (b *fakeBackend) record(format string, a ...any) {
	b.calls = append(b.calls, fmt.Sprintf(format, a...))
}

func (b *fakeBackend) Start(_ context.Context, g Guest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("start %s", g.Name)
	fg, ok := b.guests[g.Name]
	if !ok || specHash(fg.spec) != specHash(g) {
		fg = &fakeGuest{spec: g}
		b.guests[g.Name] = fg
	}
	b.nextPID++
	fg.running, fg.pid = true, b.nextPID
	fg.starts++
	return nil
}

func (b *fakeBackend) State(_ context.Context, name string) (GuestState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fg, ok := b.guests[name]
	if !ok || !fg.running {
		return GuestState{}, nil
	}
	return GuestState{Running: true, PID: fg.pid, StartedAt: testNow.Add(-90 * time.Second)}, nil
}

func (b *fakeBackend) Shutdown(_ context.Context, name string, timeout time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("shutdown %s %s", name, timeout)
	if b.hangStop {
		return ErrShutdownTimeout
	}
	if fg, ok := b.guests[name]; ok {
		fg.running = false
	}
	return nil
}

func (b *fakeBackend) Kill(_ context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("kill %s", name)
	if fg, ok := b.guests[name]; ok {
		fg.running = false
	}
	return nil
}

func (b *fakeBackend) Remove(_ context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("remove %s", name)
	delete(b.guests, name)
	return nil
}

func (b *fakeBackend) ImportDisk(_ context.Context, ref, path string) error {
	if b.importing != nil {
		<-b.importing
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("import %s < %s", ref, filepath.Base(path))
	b.disks[ref] = fmt.Sprintf("file %s (%d bytes)", filepath.Base(path), len(raw))
	return nil
}

func (b *fakeBackend) CommitDisk(_ context.Context, container, ref string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fg, ok := b.guests[container]
	if !ok || !fg.spec.Disk {
		return false, nil
	}
	b.record("commit %s > %s", container, ref)
	b.disks[ref] = b.disks[fg.spec.Image] + " + writes of " + container
	return true, nil
}

func (b *fakeBackend) CopyDisk(_ context.Context, from, to string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	content, ok := b.disks[from]
	if !ok {
		return false, nil
	}
	b.record("copy %s > %s", from, to)
	b.disks[to] = content
	return true, nil
}

func (b *fakeBackend) RemoveDisk(_ context.Context, ref string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.disks[ref]; ok {
		b.record("rmdisk %s", ref)
		delete(b.disks, ref)
	}
	return nil
}

func (b *fakeBackend) HasDisk(_ context.Context, ref string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.disks[ref]
	return ok, nil
}

// diskList renders the disks for a transcript.
func (b *fakeBackend) diskList() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var lines []string
	for _, ref := range sortedKeys(b.disks) {
		lines = append(lines, ref+": "+b.disks[ref])
	}
	return strings.Join(lines, "\n")
}

// crash makes a guest's container die behind qm's back.
func (b *fakeBackend) crash(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.guests[name].running = false
}

func (b *fakeBackend) guest(name string) *fakeGuest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.guests[name]
}

func (b *fakeBackend) takeCalls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.calls
	b.calls = nil
	return out
}

// fakeProcs stands in for the node's kvm stand-ins: it records them with
// the backend's calls (node paths without the test's root) and hands out
// pids from 40001.
type fakeProcs struct {
	b    *fakeBackend
	root string
	next int
}

func (p *fakeProcs) Spawn(argv []string) (int, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	p.b.record("spawn %s", strings.ReplaceAll(strings.Join(argv, " "), p.root, ""))
	p.next++
	return 40000 + p.next, nil
}

func (p *fakeProcs) Stop(pid int, pidfile string) error {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	p.b.record("stop %d %s", pid, strings.TrimPrefix(pidfile, p.root))
	return nil
}

// detRand is a deterministic byte stream (splitmix64), so MACs, UUIDs and
// salts are the same on every run.
type detRand struct{ state uint64 }

func (r *detRand) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		r.state += 0x9e3779b97f4a7c15
		z := r.state
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], z)
		copy(p[i:], b[:])
	}
	return len(p), nil
}

var testNow = time.Date(2024, 5, 2, 10, 15, 3, 0, time.UTC)

// harness is one simulated node in a temp dir.
type harness struct {
	t       *testing.T
	mu      sync.Mutex // guards sim.PID: commands may run at once
	sim     *Sim
	backend *fakeBackend
	log     strings.Builder
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	// Short root: unix socket paths must stay below 108 bytes.
	root, err := os.MkdirTemp("", "pvs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	be := newFakeBackend()
	s := &Sim{
		Root: root, Node: "pve", HostDir: "/srv/rig", Network: "phoenix-rig-t1", GuestImage: "phoenix-rig-guest:abc",
		RigID: "t1", Backend: be, Disks: be, Now: func() time.Time { return testNow }, Location: time.UTC,
		Rand: &detRand{}, LockWait: 300 * time.Millisecond, PingTimeout: 300 * time.Millisecond,
		AgentTimeout: 2 * time.Second, PollInterval: 20 * time.Millisecond, PID: 4242, PStart: 123456,
	}
	s.Procs = &fakeProcs{b: be, root: root}
	if err := s.layout(); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sim: s, backend: be}
	h.write("etc/pve/storage.cfg", testStorageCfg)
	return h
}

// testStorageCfg: local as an installer without LVM makes it (images on
// it too), local-lvm as the rig's.
const testStorageCfg = `dir: local
	path /var/lib/vz
	content iso,vztmpl,backup,snippets,import,images,rootdir

lvmthin: local-lvm
	thinpool data
	vgname pve
	content rootdir,images
`

// write creates a file below the node's root.
func (h *harness) write(path, content string) {
	h.t.Helper()
	full := h.sim.path(path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) read(path string) string {
	h.t.Helper()
	raw, err := os.ReadFile(h.sim.path(path))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(raw)
}

type result struct {
	stdout, stderr string
	code           int
}

// run executes one command line; args[0] is qm, pvesh or pvesim.
func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	// Every command is a process of its own, with its own pid: a copy of
	// the simulator, so commands run at once (hold-lock) share nothing.
	h.mu.Lock()
	h.sim.PID++
	sim := *h.sim
	h.mu.Unlock()
	code := sim.Run(ctx, args[0], args[1:], strings.NewReader(stdin), &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// step runs a command and adds it to the transcript.
func (h *harness) step(stdin string, args ...string) result {
	h.t.Helper()
	r := h.run(stdin, args...)
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if n := utf8.RuneCountInString(a); n > 200 {
			shown[i] = string([]rune(a)[:20]) + fmt.Sprintf("…(%d characters)", n)
		}
	}
	fmt.Fprintf(&h.log, "$ %s\n", strings.Join(shown, " "))
	if r.stdout != "" {
		fmt.Fprintf(&h.log, "--- stdout\n%s", r.stdout)
		if !strings.HasSuffix(r.stdout, "\n") {
			h.log.WriteString("\\ no newline\n")
		}
	}
	if r.stderr != "" {
		fmt.Fprintf(&h.log, "--- stderr\n%s", r.stderr)
		if !strings.HasSuffix(r.stderr, "\n") {
			h.log.WriteString("\\ no newline\n")
		}
	}
	fmt.Fprintf(&h.log, "--- exit %d\n\n", r.code)
	return r
}

// file adds a node file to the transcript.
func (h *harness) file(path string) {
	h.t.Helper()
	fmt.Fprintf(&h.log, "=== %s\n%s\n", path, h.read(path))
}

// layout adds /etc/pve's entries (symlinks with their targets) and the
// node directory's configs to the transcript.
func (h *harness) layout() {
	h.t.Helper()
	var lines []string
	for _, dir := range []string{"etc/pve", "etc/pve/nodes/pve/qemu-server"} {
		entries, err := os.ReadDir(h.sim.path(dir))
		if err != nil {
			h.t.Fatal(err)
		}
		for _, e := range entries {
			line := dir + "/" + e.Name()
			if e.Type()&os.ModeSymlink != 0 {
				target, _ := os.Readlink(h.sim.path(dir, e.Name()))
				line += " -> " + target
			} else if e.IsDir() {
				line += "/"
			}
			lines = append(lines, line)
		}
	}
	fmt.Fprintf(&h.log, "=== layout\n%s\n\n", strings.Join(lines, "\n"))
}

// backendCalls adds the recorded Docker calls to the transcript.
func (h *harness) backendCalls() {
	calls := h.backend.takeCalls()
	fmt.Fprintf(&h.log, "=== backend\n%s\n\n", strings.Join(calls, "\n"))
}

// golden compares the transcript with testdata/<name>.golden; oldnew are
// replacements (as for strings.NewReplacer) for what differs between runs.
func (h *harness) golden(name string, oldnew ...string) {
	h.t.Helper()
	checkGolden(h.t, name, strings.NewReplacer(oldnew...).Replace(h.log.String()))
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden file (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// specJSON renders a Guest for the transcript.
func specJSON(g Guest) string {
	g.Env = append([]string(nil), g.Env...)
	sort.Strings(g.Env)
	raw, _ := json.MarshalIndent(g, "", "  ")
	return string(raw)
}

// Fixtures: a template and a clone configured like phoenix's VM 8101.

const conf9000 = `agent: enabled=1
boot: order=scsi0;ide2;net0
cores: 2
ide2: local-lvm:vm-9000-cloudinit,media=cdrom
memory: 2048
meta: creation-qemu=9.0.2,ctime=1717000000
name: debian-12-template
net0: virtio=BC:24:11:AA:BB:CC,bridge=vmbr0
scsi0: local-lvm:base-9000-disk-0,size=3584M
scsihw: virtio-scsi-pci
serial0: socket
smbios1: uuid=0d1f7a8e-1c2b-4d3e-8f4a-5b6c7d8e9f00
template: 1
vmgenid: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
`

const conf8101 = `agent: enabled=1
boot: order=scsi0;ide2;net0
ciuser: admin
cores: 2
ide2: local-lvm:vm-8101-cloudinit,media=cdrom
ipconfig0: ip=10.0.10.123/24,gw=10.0.10.1
memory: 2048
meta: creation-qemu=9.0.2,ctime=1717000000
name: web01
nameserver: 1.1.1.1
net0: virtio=BC:24:11:12:34:56,bridge=vmbr0
onboot: 1
scsi0: local-lvm:base-9000-disk-0/vm-8101-disk-0,size=32G
scsihw: virtio-scsi-pci
searchdomain: example.com
smbios1: uuid=6f1c2b7e-8d1a-4c3e-9f0a-1b2c3d4e5f60
sshkeys: ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIOuTestKey%20me%40laptop%0A
vmgenid: 0b6e1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b
`

// withVMs writes the fixture configs, and the disks of 9000 and 8101 (a
// linked clone of it) as if 9000 had been built from an image.
func (h *harness) withVMs() *harness {
	h.write("etc/pve/qemu-server/9000.conf", conf9000)
	h.write("etc/pve/qemu-server/8101.conf", conf8101)
	h.backend.disks[h.sim.diskRef("local-lvm:base-9000-disk-0")] = "cloud image"
	h.backend.disks[h.sim.diskRef("local-lvm:base-9000-disk-0/vm-8101-disk-0")] = "cloud image"
	return h
}

// disks adds the backend's disks to the transcript.
func (h *harness) disks() {
	fmt.Fprintf(&h.log, "=== disks\n%s\n\n", h.backend.diskList())
}

// startWithAgent starts VM vmid and serves a fake agent on its socket.
func (h *harness) startWithAgent(vmid int, hostname string) *fakeQGA {
	h.t.Helper()
	if r := h.run("", "qm", "start", fmt.Sprint(vmid)); r.code != 0 {
		h.t.Fatalf("qm start %d: %+v", vmid, r)
	}
	h.backend.takeCalls()
	if err := os.MkdirAll(h.sim.path("var/run/qemu-server"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	return startFakeQGA(h.t, h.sim.qgaSocket(vmid), hostname)
}
