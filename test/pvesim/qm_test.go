package pvesim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Golden transcripts of qm command sequences against a temp node with the
// fake Docker backend. Each testdata/<name>.golden shows the command,
// stdout, stderr and exit code of every step, plus node files and the
// backend calls where they matter.

func TestListAndStatus(t *testing.T) {
	h := newHarness(t)
	h.step("", "qm", "list")
	h.withVMs()
	h.write("etc/pve/qemu-server/100.conf", "memory: 512\nlock: backup\n")
	h.step("", "qm", "list")
	h.step("", "qm", "status", "8101")
	h.step("", "qm", "status", "8101", "--verbose", "1")
	h.step("", "qm", "status", "100", "--verbose")
	h.step("", "qm", "status", "999")
	h.step("", "qm", "status", "99")
	h.step("", "qm", "status", "abc")
	h.step("", "qm", "status")
	h.golden("list_status")
}

func TestConfigAndPending(t *testing.T) {
	h := newHarness(t).withVMs()
	h.write("etc/pve/qemu-server/8102.conf", "#web: the second%0A\ncores: 2\ncipassword: $5$abc$def\nmemory: 1024\nonboot: 1\nparent: base\n\n"+
		"[PENDING]\ncores: 4\ndelete: onboot\nmemory: 4096\n\n[base]\ncores: 1\nmemory: 1024\nsnaptime: 1714644903\n")
	h.step("", "qm", "config", "8102")
	h.step("", "qm", "config", "8102", "--current", "1")
	h.step("", "qm", "config", "8102", "--snapshot", "base")
	h.step("", "qm", "config", "8102", "--snapshot", "nope")
	h.step("", "qm", "config", "8102", "--snapshot", "base", "--current")
	h.step("", "qm", "pending", "8102")
	h.step("", "qm", "config", "404")
	h.golden("config_pending")
}

func TestCreate(t *testing.T) {
	h := newHarness(t)
	h.write("var/lib/vz/template/debian-12.qcow2", strings.Repeat("x", 2048))
	h.step("", "qm", "create", "9001", "--name", "debian-12", "--memory", "2048", "--cores", "2", "--net0", "virtio,bridge=vmbr0",
		"--scsihw", "virtio-scsi-pci", "--scsi0", "local-lvm:0,import-from=/var/lib/vz/template/debian-12.qcow2",
		"--ide2", "local-lvm:cloudinit", "--serial0", "socket", "--agent", "enabled=1", "--ciuser", "admin", "--cipassword", "pw1",
		"--onboot", "yes")
	h.file("etc/pve/qemu-server/9001.conf")
	h.step("", "qm", "create", "9002", "--scsi0", "local:8,format=qcow2,discard=on", "--virtio1", "local-lvm:1.5", "--net0", "e1000=BC:24:11:00:00:01")
	h.step("", "qm", "config", "9002")
	h.step("", "qm", "create", "9001", "--memory", "1024")
	h.step("", "qm", "create", "9003", "--memory", "8")
	h.step("", "qm", "create", "9003", "--ostype", "linux")
	h.golden("create")
}

func TestClone(t *testing.T) {
	h := newHarness(t).withVMs()
	h.step("", "qm", "clone", "9000", "8102", "--name", "web02")
	h.file("etc/pve/qemu-server/8102.conf")
	h.step("", "qm", "start", "8102")
	h.step("", "qm", "clone", "8102", "8103", "--full", "--storage", "local", "--format", "qcow2")
	h.file("etc/pve/qemu-server/8103.conf")
	h.backendCalls()
	h.disks()
	h.step("", "qm", "clone", "999", "8104")
	h.step("", "qm", "clone", "9000", "8101")
	h.step("", "qm", "clone", "8101", "8104", "--full", "0")
	h.step("", "qm", "clone", "9000", "8104", "--storage", "local")
	h.step("", "qm", "clone", "9000", "8104", "--snapname", "gone")
	h.golden("clone")
}

func TestSet(t *testing.T) {
	h := newHarness(t).withVMs()
	keys := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuNewKey ops@host\n\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 backup@host\n"
	h.step(keys, "qm", "set", "8101", "--sshkeys", "/dev/stdin", "--cipassword", "s3cret", "--ipconfig0", "ip=10.0.10.124/24,gw=10.0.10.1",
		"--nameserver", "1.1.1.1 9.9.9.9", "--tags", "web;prod")
	h.step("", "qm", "config", "8101")
	h.step("", "qm", "cloudinit", "dump", "8101", "user")
	h.step("", "qm", "set", "8101", "--delete", "onboot,description")
	h.step("", "qm", "set", "8101")
	h.step("", "qm", "set", "8101", "--cores", "0", "--name", "bad_name")
	h.step("", "qm", "set", "8101", "--sshkeys", "/root/missing.pub")
	h.step("not a key\n", "qm", "set", "8101", "--sshkeys", "/dev/stdin")
	h.step("pw2\npw2\n", "qm", "set", "8101", "--cipassword")
	h.step("pw2\npw3\n", "qm", "set", "8101", "--cipassword")
	h.step("", "qm", "set", "8101", "--cipassword", "$6$rounds=5000$salt$alreadyhashed")
	h.step("", "qm", "config", "8101", "--current")
	h.step("", "qm", "set", "8101", "--digest", "0000000000000000000000000000000000000000", "--cores", "3")
	h.step("", "qm", "set", "404", "--cores", "3")
	h.golden("set")
}

func TestSetRunningGoesPending(t *testing.T) {
	h := newHarness(t).withVMs()
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "set", "8101", "--cores", "4", "--memory", "4096", "--name", "web01-new", "--ciuser", "ops", "--delete", "agent")
	h.step("", "qm", "pending", "8101")
	h.step("", "qm", "config", "8101", "--current", "1")
	h.file("etc/pve/qemu-server/8101.conf")
	h.step("", "qm", "set", "8101", "--revert", "cores")
	h.step("", "qm", "stop", "8101")
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "config", "8101")
	h.file("etc/pve/qemu-server/8101.conf")
	h.golden("set_running")
}

func TestResize(t *testing.T) {
	h := newHarness(t).withVMs()
	h.step("", "qm", "resize", "8101", "scsi0", "+10G")
	h.step("", "qm", "disk", "resize", "8101", "scsi0", "50G")
	h.step("", "qm", "resize", "8101", "scsi0", "50G")
	h.step("", "qm", "resize", "8101", "scsi0", "20G")
	h.step("", "qm", "resize", "8101", "scsi0", "+0.5G")
	h.step("", "qm", "resize", "8101", "scsi5", "+1G")
	h.step("", "qm", "resize", "8101", "ide2", "+1G")
	h.step("", "qm", "resize", "8101", "scsi0", "10GiB")
	h.step("", "qm", "resize", "404", "scsi0", "+1G")
	h.step("", "qm", "config", "8101")
	h.golden("resize")
}

func TestPower(t *testing.T) {
	h := newHarness(t).withVMs()
	h.write("etc/pvesim/faults/8101/agent-kill-after", "20\n")
	h.write("etc/pvesim/faults/8101/ssh-off", "")
	h.step("", "qm", "start", "8101")
	h.file("rig/seed/8101/user-data")
	h.file("rig/seed/8101/network-config")
	h.file("rig/seed/8101/meta-data")
	h.file("rig/seed/8101/vendor-data")
	h.file("var/run/qemu-server/8101.pid")
	fmt.Fprintf(&h.log, "=== guest spec\n%s\n\n", specJSON(h.backend.guest("phoenix-rig-t1-vm-8101").spec))
	h.backendCalls()
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "status", "8101")
	h.step("", "qm", "list")
	h.step("", "qm", "stop", "8101")
	h.step("", "qm", "stop", "8101")
	h.step("", "qm", "status", "8101")
	h.step("", "qm", "start", "9000")
	h.step("", "qm", "start", "404")
	h.step("", "qm", "stop", "404")
	h.step("", "qm", "shutdown", "8101")
	h.step("", "qm", "shutdown", "404")
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "shutdown", "8101", "--timeout", "5")
	h.step("", "qm", "start", "8101")
	h.backend.hangStop = true
	h.step("", "qm", "shutdown", "8101", "--timeout", "3")
	h.step("", "qm", "status", "8101")
	h.step("", "qm", "shutdown", "8101", "--timeout", "3", "--forceStop", "1")
	h.backend.hangStop = false
	h.step("", "qm", "reboot", "8101")
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "reboot", "8101")
	h.backend.crash("phoenix-rig-t1-vm-8101")
	h.step("", "qm", "status", "8101")
	h.backendCalls()
	if g := h.backend.guest("phoenix-rig-t1-vm-8101"); g.starts != 5 {
		t.Errorf("container started %d times, want 5 (reused across stop/start)", g.starts)
	}
	h.golden("power")
}

func TestStartWithoutCloudinitDrive(t *testing.T) {
	h := newHarness(t)
	h.write("etc/pve/qemu-server/100.conf", "memory: 512\nname: plain\nnet0: virtio=BC:24:11:00:00:64,bridge=vmbr0\n")
	h.write("rig/seed/100/user-data", "stale\n")
	r := h.step("", "qm", "start", "100")
	if entries, err := os.ReadDir(h.sim.seedDir(100)); err != nil || len(entries) != 0 {
		t.Errorf("seed dir of a VM without cloud-init drive: %v, %v (want empty)", entries, err)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
	g := h.backend.guest("phoenix-rig-t1-vm-100").spec
	if g.IP != "" || g.MAC != "bc:24:11:00:00:64" || g.Hostname != "plain" {
		t.Errorf("spec = %+v", g)
	}
}

func TestCicustomSnippets(t *testing.T) {
	h := newHarness(t).withVMs()
	h.write("var/lib/vz/snippets/user-8101.yml", "#cloud-config\nruncmd:\n  - echo custom\n")
	h.write("var/lib/vz/snippets/vendor.yml", "#cloud-config\npackages: [nfs-common]\n")
	h.step("", "qm", "set", "8101", "--cicustom", "user=local:snippets/user-8101.yml,vendor=local:snippets/vendor.yml")
	h.step("", "qm", "start", "8101")
	h.file("rig/seed/8101/user-data")
	h.file("rig/seed/8101/vendor-data")
	h.file("rig/seed/8101/meta-data")
	h.step("", "qm", "cloudinit", "dump", "8101", "user")
	h.step("", "qm", "stop", "8101")
	h.step("", "qm", "set", "8101", "--cicustom", "user=local:snippets/gone.yml")
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "set", "8101", "--cicustom", "user=local:iso/x.iso")
	h.step("", "qm", "cloudinit", "update", "8101")
	h.step("", "qm", "set", "8101", "--cicustom", "user=nostorage")
	h.golden("cicustom")
}

func TestCloudinitUpdateRecordsChanges(t *testing.T) {
	h := newHarness(t).withVMs()
	h.step("", "qm", "set", "8101", "--ciuser", "ops", "--ipconfig0", "ip=dhcp")
	h.file("etc/pve/qemu-server/8101.conf")
	h.step("", "qm", "cloudinit", "update", "8101")
	h.file("etc/pve/qemu-server/8101.conf")
	h.file("rig/seed/8101/network-config")
	h.golden("cloudinit_update")
}

func TestDestroy(t *testing.T) {
	h := newHarness(t).withVMs()
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "destroy", "8101")
	h.step("", "qm", "destroy", "9000")
	h.step("", "qm", "stop", "8101")
	h.write("etc/pve/qemu-server/100.conf", "memory: 512\nprotection: 1\n")
	h.step("", "qm", "destroy", "100")
	h.step("", "qm", "destroy", "8101", "--purge", "1")
	h.step("", "qm", "config", "8101")
	h.step("", "qm", "destroy", "404")
	h.step("", "qm", "destroy", "9000")
	h.step("", "qm", "list")
	h.backendCalls()
	h.disks()
	for _, gone := range []string{"rig/seed/8101", "var/run/qemu-server/8101.pid"} {
		if _, err := os.Stat(h.sim.path(gone)); !os.IsNotExist(err) {
			t.Errorf("%s still exists after destroy", gone)
		}
	}
	h.golden("destroy")
}

func TestSnapshots(t *testing.T) {
	h := newHarness(t).withVMs()
	h.step("", "qm", "listsnapshot", "8101")
	h.step("", "qm", "snapshot", "8101", "pre-upgrade", "--description", "before apt upgrade\nsecond line")
	h.sim.Now = func() time.Time { return testNow.Add(45*time.Minute + 38*time.Second) }
	h.step("", "qm", "snapshot", "8101", "post-upgrade")
	h.step("", "qm", "listsnapshot", "8101")
	h.step("", "qm", "snapshot", "8101", "pre-upgrade")
	h.step("", "qm", "snapshot", "8101", "Current")
	h.step("", "qm", "snapshot", "8101", "x")
	h.step("", "qm", "snapshot", "9000", "nope")
	h.step("", "qm", "snapshot", "404", "nope")
	h.step("", "qm", "config", "8101", "--snapshot", "pre-upgrade")
	h.file("etc/pve/qemu-server/8101.conf")
	h.step("", "qm", "rollback", "8101", "pre-upgrade")
	h.sim.Now = func() time.Time { return testNow.Add(2 * time.Hour) }
	h.step("", "qm", "snapshot", "8101", "branch")
	h.step("", "qm", "listsnapshot", "8101")
	h.step("", "qm", "delsnapshot", "8101", "pre-upgrade")
	h.step("", "qm", "listsnapshot", "8101")
	h.step("", "qm", "delsnapshot", "8101", "pre-upgrade")
	h.step("", "qm", "template", "8101")
	h.golden("snapshots")
}

func TestTemplate(t *testing.T) {
	h := newHarness(t)
	h.write("etc/pve/qemu-server/100.conf", "ide2: local-lvm:vm-100-cloudinit,media=cdrom\nmemory: 512\n"+
		"scsi0: local-lvm:vm-100-disk-0,size=8G\nscsi1: local:100/vm-100-disk-1.qcow2,size=1G\nide0: local:iso/debian.iso,media=cdrom\n")
	h.step("", "qm", "template", "100")
	h.step("", "qm", "config", "100")
	h.step("", "qm", "template", "100")
	h.step("", "qm", "start", "100")
	h.step("", "qm", "template", "404")
	h.golden("template")
}

func TestLocks(t *testing.T) {
	h := newHarness(t).withVMs()
	h.write("etc/pve/qemu-server/8101.conf", conf8101+"lock: backup\n")
	h.step("", "qm", "set", "8101", "--cores", "4")
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "resize", "8101", "scsi0", "+1G")
	h.step("", "qm", "set", "8101", "--cores", "4", "--skiplock", "1")
	h.step("", "qm", "unlock", "8101")
	h.step("", "qm", "unlock", "8101")
	h.step("", "qm", "config", "8101")

	// A held flock: direct commands wait on stderr, workers on stdout.
	release := holdFlock(t, h.sim.path(lockPath(8101)))
	h.step("", "qm", "set", "8101", "--cores", "5")
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "unlock", "8101")
	go func() {
		time.Sleep(100 * time.Millisecond)
		release()
	}()
	h.step("", "qm", "set", "8101", "--cores", "6")
	h.golden("locks")
}

// holdFlock takes the exclusive flock the way another qm process would.
func holdFlock(t *testing.T, path string) (release func()) {
	t.Helper()
	if err := os.MkdirAll(path[:strings.LastIndexByte(path, '/')], 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

func TestHoldLockCommand(t *testing.T) {
	h := newHarness(t).withVMs()
	done := make(chan result)
	go func() { done <- h.run("", "pvesim", "hold-lock", "8101", "1") }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := os.OpenFile(h.sim.path(lockPath(8101)), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			f.Close()
			if err != nil {
				break // held by hold-lock
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("hold-lock never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := h.run("", "qm", "set", "8101", "--cores", "4")
	want := "trying to acquire lock...can't lock file '/var/lock/qemu-server/lock-8101.conf' - got timeout\n"
	if r.code != 255 || r.stderr != want {
		t.Errorf("qm set while held: %+v, want exit 255 and stderr %q", r, want)
	}
	if hr := <-done; hr.code != 0 || hr.stdout != "holding lock-8101.conf for 1s\n" {
		t.Errorf("hold-lock: %+v", hr)
	}
	if r := h.run("", "qm", "set", "8101", "--cores", "4"); r.code != 0 {
		t.Errorf("qm set after release: %+v", r)
	}
}

func TestUnknownCommands(t *testing.T) {
	h := newHarness(t).withVMs()
	h.step("", "qm", "foo")
	h.step("", "qm", "guest")
	h.step("", "qm", "li")
	h.step("", "qm", "conf", "8101", "--cur")
	h.golden("unknown")
}

func TestLatency(t *testing.T) {
	h := newHarness(t)
	h.write("etc/pvesim/latency_ms", "150\n")
	start := time.Now()
	if r := h.run("", "qm", "list"); r.code != 0 {
		t.Fatalf("qm list: %+v", r)
	}
	// Only a lower bound: the sleep must have happened.
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("qm list took %v, want at least the configured 150ms", d)
	}
}

func TestFromEnv(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/etc/pvesim", 0o755); err != nil {
		t.Fatal(err)
	}
	env := "# written by the rig harness\nPVESIM_HOST_DIR=/srv/rig-1\nPVESIM_NETWORK=phoenix-rig-1\nPVESIM_GUEST_IMAGE=phoenix-rig-guest:1\nPVESIM_RIG_ID=1\nPVESIM_NODE=fromfile\nPVESIM_PRIVILEGED=false\n"
	if err := os.WriteFile(root+"/etc/pvesim/env", []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
	s := FromEnv([]string{"PVESIM_ROOT=" + root, "PVESIM_NODE=node1", "PATH=/bin"})
	if s.Root != root || s.Node != "node1" || s.HostDir != "/srv/rig-1" || s.Network != "phoenix-rig-1" ||
		s.GuestImage != "phoenix-rig-guest:1" || s.RigID != "1" || !s.Unprivileged {
		t.Errorf("FromEnv = %+v", s)
	}
	if d := FromEnv(nil); d.Root != "/" || d.Node != "pve" || d.Unprivileged {
		t.Errorf("defaults: root %q node %q unprivileged %v", d.Root, d.Node, d.Unprivileged)
	}
}

// rigStorageCfg is the rig node's storage.cfg: local holds no VM images.
const rigStorageCfg = `dir: local
	path /var/lib/vz
	content iso,vztmpl,backup,snippets,import

lvmthin: local-lvm
	thinpool data
	vgname pve
	content rootdir,images
`

// cloudImage is a small disk image in pvesim's format: a gzip'ed tar of
// a root file system with one file.
func cloudImage(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("built from a served cloud image\n")
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/cloud-image-marker", Mode: 0o644, Size: int64(len(body))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Write(body)
	tw.Close()
	zw.Close()
	return buf.String()
}

func TestImportFromAndTemplate(t *testing.T) {
	h := newHarness(t)
	h.write("etc/pve/storage.cfg", rigStorageCfg)
	h.write("var/lib/vz/import/cloud.qcow2", cloudImage(t))
	h.write("var/lib/vz/import/broken.qcow2", "not an image\n")
	h.write("var/lib/vz/template/iso/cloud.img", cloudImage(t))
	h.step("", "qm", "create", "9000", "--name", "tpl", "--memory", "2048", "--cores", "2", "--net0", "virtio,bridge=vmbr0",
		"--scsihw", "virtio-scsi-pci", "--scsi0", "local-lvm:0,import-from=/var/lib/vz/import/cloud.qcow2",
		"--ide2", "local-lvm:cloudinit", "--boot", "order=scsi0", "--serial0", "socket", "--vga", "serial0",
		"--agent", "enabled=1", "--ipconfig0", "ip=dhcp", "--ciuser", "phoenix")
	h.file("etc/pve/qemu-server/9000.conf")
	h.step("", "qm", "create", "9001", "--scsi0", "local-lvm:0,import-from=local:import/cloud.qcow2")
	h.step("", "qm", "config", "9001")
	h.backendCalls()

	// Refused before anything is written, then in the task (config removed).
	h.step("", "qm", "create", "9002", "--scsi0", "local-lvm:4,import-from=/var/lib/vz/import/cloud.qcow2")
	h.step("", "qm", "create", "9002", "--scsi0", "local-lvm:0,import-from=local:iso/cloud.img")
	h.step("", "qm", "create", "9002", "--scsi0", "local:0,import-from=/var/lib/vz/import/cloud.qcow2")
	h.step("", "qm", "create", "9002", "--scsi0", "nosuch:0,import-from=/var/lib/vz/import/cloud.qcow2")
	h.step("", "qm", "create", "9002", "--scsi0", "local-lvm:0,import-from=/var/lib/vz/import/gone.qcow2")
	h.step("", "qm", "create", "9002", "--scsi0", "local-lvm:0,import-from=local:import/broken.qcow2")
	h.step("", "qm", "config", "9002")
	// The documented form: qm set on an existing VM; an .img (iso content)
	// by its path.
	h.step("", "qm", "create", "9003", "--memory", "512")
	h.step("", "qm", "set", "9003", "--scsi0", "local-lvm:0,import-from=/var/lib/vz/template/iso/cloud.img", "--boot", "order=scsi0")
	h.step("", "qm", "config", "9003")

	// The template build: boot, the guest writes, stop, qm template.
	h.step("", "qm", "start", "9000")
	h.step("", "qm", "template", "9000")
	h.step("", "qm", "stop", "9000")
	h.step("", "qm", "template", "9000")
	h.step("", "qm", "config", "9000")
	h.step("", "qm", "clone", "9000", "8101", "--name", "web01")
	h.step("", "qm", "clone", "9000", "8102", "--name", "web02", "--full", "1")
	h.step("", "qm", "start", "8101")
	h.backendCalls()
	fmt.Fprintf(&h.log, "=== guest spec of 8101\n%s\n\n", specJSON(h.backend.guest("phoenix-rig-t1-vm-8101").spec))
	h.disks()
	h.step("", "qm", "destroy", "9000")

	// A disk without a root file system boots nothing.
	h.step("", "qm", "create", "9100", "--scsi0", "local-lvm:4", "--boot", "order=scsi0")
	h.step("", "qm", "start", "9100")
	fmt.Fprintf(&h.log, "=== guest spec of 9100\n%s\n\n", specJSON(h.backend.guest("phoenix-rig-t1-vm-9100").spec))
	h.golden("import_template")
}

// A create task holds "lock: create" and the flock until its disks are
// imported: other commands wait for the flock; once the task is gone (as
// when it was killed) they see the VM locked.
func TestCreateLockedWhileImporting(t *testing.T) {
	h := newHarness(t)
	h.write("var/lib/vz/import/cloud.qcow2", cloudImage(t))
	h.backend.importing = make(chan struct{})
	done := make(chan result)
	go func() {
		done <- h.run("", "qm", "create", "9000", "--scsi0", "local-lvm:0,import-from=/var/lib/vz/import/cloud.qcow2")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, _ := os.ReadFile(h.sim.confPath(9000))
		if string(raw) == "lock: create\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("config while importing: %q, want \"lock: create\\n\"", raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.step("", "qm", "config", "9000")
	h.step("", "qm", "start", "9000")
	h.step("", "qm", "create", "9000", "--memory", "512")
	close(h.backend.importing)
	r := <-done
	if r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	h.step("", "qm", "config", "9000", "--current", "1")
	// A create task that was killed leaves its "lock: create" config.
	h.write("etc/pve/qemu-server/9001.conf", "lock: create\n")
	h.step("", "qm", "start", "9001")
	h.step("", "qm", "create", "9001", "--memory", "512")
	h.step("", "qm", "destroy", "9001")
	h.step("", "qm", "unlock", "9001")
	h.step("", "qm", "destroy", "9001")
	h.golden("create_locked")
}

func TestDiskImport(t *testing.T) {
	h := newHarness(t)
	h.write("etc/pve/storage.cfg", rigStorageCfg)
	h.write("var/lib/vz/import/cloud.qcow2", cloudImage(t))
	h.write("etc/pve/qemu-server/9000.conf", "memory: 2048\nname: tpl\n")
	h.step("", "qm", "disk", "import", "9000", "/var/lib/vz/import/cloud.qcow2", "local-lvm")
	h.step("", "qm", "importdisk", "9000", "/var/lib/vz/import/cloud.qcow2", "local-lvm", "--target-disk", "scsi0")
	h.step("", "qm", "disk", "import", "9000", "/var/lib/vz/import/cloud.qcow2", "local-lvm", "--target-disk", "scsi0")
	h.step("", "qm", "resize", "9000", "scsi0", "+1G")
	h.step("", "qm", "config", "9000")
	h.step("", "qm", "set", "9000", "--delete", "unused0")
	h.step("", "qm", "disk", "import", "9000", "/var/lib/vz/import/gone.qcow2", "local-lvm")
	h.step("", "qm", "disk", "import", "9000", "/var/lib/vz/import", "local-lvm")
	h.step("", "qm", "disk", "import", "9000", "/var/lib/vz/import/cloud.qcow2", "local")
	h.step("", "qm", "disk", "import", "9000", "/var/lib/vz/import/cloud.qcow2", "nosuch")
	h.step("", "qm", "disk", "import", "404", "/var/lib/vz/import/cloud.qcow2", "local-lvm")
	h.step("", "qm", "template", "9000")
	h.step("", "qm", "disk", "import", "9000", "/var/lib/vz/import/cloud.qcow2", "local-lvm", "--target-disk", "scsi1")
	h.step("", "qm", "config", "9000")
	h.write("etc/pve/qemu-server/9001.conf", "memory: 512\nlock: backup\n")
	h.step("", "qm", "disk", "import", "9001", "/var/lib/vz/import/cloud.qcow2", "local-lvm")
	h.backendCalls()
	h.disks()
	h.golden("disk_import")
}

// /etc/pve as pmxcfs lays it out: configs in the node's directory, seen
// through the qemu-server symlink, and .vmlist moving with every config
// change. A node image that made qemu-server a directory is laid out anew.
func TestPmxcfsLayout(t *testing.T) {
	h := newHarness(t)
	for _, l := range []string{"qemu-server", "local"} {
		if err := os.Remove(h.sim.path("etc/pve", l)); err != nil {
			t.Fatal(err)
		}
	}
	h.write("etc/pve/qemu-server/9000.conf", conf9000)
	h.write("etc/pve/qemu-server/8101.conf", conf8101)
	h.backend.disks[h.sim.diskRef("local-lvm:base-9000-disk-0")] = "cloud image"
	h.step("", "qm", "list")
	h.layout()
	h.step("", "qm", "set", "8101", "--cores", "4")
	h.file("etc/pve/.vmlist")
	h.step("", "qm", "clone", "9000", "8102", "--name", "web02")
	h.file("etc/pve/.vmlist")
	h.file("etc/pve/nodes/pve/qemu-server/8102.conf")
	h.step("", "qm", "destroy", "8102")
	h.file("etc/pve/.vmlist")
	h.step("", "qm", "destroy", "8101")
	h.step("", "qm", "destroy", "9000")
	h.file("etc/pve/.vmlist")
	h.golden("pmxcfs")
}
