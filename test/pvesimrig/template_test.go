package pvesimrig

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

// TestTemplateFromServedImage builds a template on a bare node the way
// issue 7 describes, with qm/pvesh over SSH, and checks from outside
// (docker exec, files on the node) that the served bytes are what the VMs
// run and that what the template's guest wrote reaches its clones.
func TestTemplateFromServedImage(t *testing.T) {
	r := rig.NewBare(t)
	n := dialNode(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const importDir = "/var/lib/vz/import/"
	image := importDir + rig.CloudImageName
	download := func(sum string) (stdout, stderr string) {
		t.Helper()
		res, err := n.run(ctx, "", "pvesh", "create", "/nodes/pve/storage/local/download-url", "--url", r.CloudImageURL,
			"--filename", rig.CloudImageName, "--content", "import", "--checksum", sum, "--checksum-algorithm", "sha256")
		if err != nil { // pvesh exits 0 even when the task failed
			t.Fatalf("download-url: %v", err)
		}
		return string(res.Stdout), string(res.Stderr)
	}

	// A wrong checksum: the task fails and nothing is left under the name.
	wrong := strings.Repeat("0", 64)
	out, errText := download(wrong)
	if want := fmt.Sprintf("checksum mismatch: got '%s' != expect '%s'\n", r.CloudImageSHA256, wrong); errText != want {
		t.Errorf("download-url with a wrong checksum: stderr %q, want %q", errText, want)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	upid := lines[len(lines)-1]
	status := n.must(ctx, "pvesh", "get", "/nodes/pve/tasks/"+upid+"/status", "--output-format", "json")
	var st struct{ Exitstatus, Status string }
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Status != "stopped" || !strings.HasPrefix(st.Exitstatus, "checksum mismatch") {
		t.Errorf("task status after the mismatch: %s (%v)", status, err)
	}
	if res, _ := r.NodeExec(ctx, "ls", "-A", importDir); strings.TrimSpace(res.Stdout) != "" {
		t.Fatalf("%s after a checksum mismatch holds %q, want nothing", importDir, res.Stdout)
	}

	// The right checksum: the served bytes land under the name.
	if _, errText := download(r.CloudImageSHA256); errText != "" {
		t.Fatalf("download-url: %s", errText)
	}
	if res, err := r.NodeExec(ctx, "sha256sum", image); err != nil || !strings.HasPrefix(res.Stdout, r.CloudImageSHA256+" ") {
		t.Fatalf("sha256sum %s on the node: %q, %v; want %s", image, res.Stdout, err, r.CloudImageSHA256)
	}
	if _, errText := download(r.CloudImageSHA256); errText != "" {
		t.Errorf("download-url of a file already there: %s", errText)
	}
	// The plain way works on the node too (wget, sha256sum, mv).
	iso := "/var/lib/vz/template/iso/plain.img"
	n.must(ctx, "sh", "-c", fmt.Sprintf("wget -q -O %[1]s.tmp %[2]s && echo '%[3]s  %[1]s.tmp' | sha256sum -c - && mv %[1]s.tmp %[1]s",
		iso, r.CloudImageURL, r.CloudImageSHA256))

	// The template build: create with the image as boot disk, boot, the
	// guest writes (through the agent), shut down, qm template.
	tpl := strconv.Itoa(rig.TemplateVMID)
	n.must(ctx, "qm", "create", tpl, "--name", "debian-12-cloud", "--memory", "1024", "--cores", "1",
		"--net0", "virtio,bridge=vmbr0", "--scsihw", "virtio-scsi-pci", "--scsi0", "local-lvm:0,import-from="+image,
		"--ide2", "local-lvm:cloudinit", "--boot", "order=scsi0", "--serial0", "socket", "--vga", "serial0",
		"--agent", "enabled=1", "--ciupgrade", "0",
		"--ipconfig0", fmt.Sprintf("ip=%s/%d,gw=%s", r.GuestIP(1), r.PrefixLen(), r.Gateway()))
	n.must(ctx, "qm", "start", tpl)
	if err := waitAgent(ctx, n, rig.TemplateVMID, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	marker := "phoenix-rig cloud image, made from " + r.Images.Guest + "\n"
	if res, err := r.GuestExec(ctx, rig.TemplateVMID, "cat", rig.CloudImageMarker); err != nil || res.Stdout != marker {
		t.Fatalf("the template's guest does not run the served image: %s holds %q (%v %v)", rig.CloudImageMarker, res.Stdout, err, res.Err())
	}
	n.must(ctx, "qm", "guest", "exec", tpl, "--", "sh", "-c", "echo built into the template > /etc/template-stamp")
	n.must(ctx, "qm", "shutdown", tpl)
	n.must(ctx, "qm", "template", tpl)
	cfg := n.must(ctx, "qm", "config", tpl)
	if !strings.Contains(cfg, "template: 1\n") || !strings.Contains(cfg, "scsi0: local-lvm:base-9000-disk-0,size=") {
		t.Errorf("qm config %s after qm template:\n%s", tpl, cfg)
	}
	if exists, _, err := r.GuestRunning(ctx, rig.TemplateVMID); err != nil || exists {
		t.Errorf("the template's container after qm template: exists %v, %v", exists, err)
	}

	// The template's firewall (state in /etc/pve/firewall) goes with its clones.
	n.must(ctx, "pvesh", "set", "/nodes/pve/qemu/"+tpl+"/firewall/options", "--enable", "1")
	n.must(ctx, "pvesh", "create", "/nodes/pve/qemu/"+tpl+"/firewall/rules", "--type", "in", "--action", "ACCEPT",
		"--proto", "icmp", "--enable", "1", "--comment", "ping")

	// A linked and a full clone boot with what the template's guest wrote.
	clones := map[int]string{8101: "", 8102: "--full"}
	for vmid, full := range clones {
		argv := []string{"qm", "clone", tpl, strconv.Itoa(vmid), "--name", "clone-" + strconv.Itoa(vmid)}
		if full != "" {
			argv = append(argv, "--full", "1")
		}
		out := n.must(ctx, argv...)
		kind := map[bool]string{true: "full", false: "linked"}[full != ""]
		if !strings.Contains(out, "create "+kind+" clone of drive scsi0 (local-lvm:base-9000-disk-0)") {
			t.Errorf("qm clone %d: %q, want a %s clone of scsi0", vmid, out, kind)
		}
		i := vmid - 8099 // guest addresses 2 and 3
		n.must(ctx, "qm", "set", strconv.Itoa(vmid), "--ipconfig0", fmt.Sprintf("ip=%s/%d,gw=%s", r.GuestIP(i), r.PrefixLen(), r.Gateway()))
		n.must(ctx, "qm", "start", strconv.Itoa(vmid))
	}
	for vmid := range clones {
		if err := waitAgent(ctx, n, vmid, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		res, err := r.GuestExec(ctx, vmid, "cat", "/etc/template-stamp", rig.CloudImageMarker)
		if err != nil || res.Stdout != "built into the template\n"+marker {
			t.Errorf("vm %d lacks the template's state: %q (%v %v)", vmid, res.Stdout, err, res.Err())
		}
	}
	// Each clone has a disk of its own, and keeps its writes when its
	// container has to be made anew (a new address).
	if res, err := r.GuestExec(ctx, 8101, "sh", "-c", "echo only in 8101 > /etc/clone-stamp"); err != nil || res.ExitCode != 0 {
		t.Fatalf("write in 8101: %v %v", err, res.Err())
	}
	if res, _ := r.GuestExec(ctx, 8102, "test", "-e", "/etc/clone-stamp"); res.ExitCode == 0 {
		t.Error("a file written in linked clone 8101 shows up in full clone 8102")
	}
	n.must(ctx, "qm", "stop", "8101")
	n.must(ctx, "qm", "set", "8101", "--ipconfig0", fmt.Sprintf("ip=%s/%d,gw=%s", r.GuestIP(4), r.PrefixLen(), r.Gateway()))
	n.must(ctx, "qm", "start", "8101")
	if res, err := r.GuestExec(ctx, 8101, "cat", "/etc/clone-stamp"); err != nil || res.Stdout != "only in 8101\n" {
		t.Errorf("8101 after a new address: /etc/clone-stamp %q (%v %v)", res.Stdout, err, res.Err())
	}

	// Firewall rules through pvesh land in the VM's .fw file on the node.
	n.must(ctx, "pvesh", "create", "/nodes/pve/qemu/8101/firewall/rules", "--type", "in", "--action", "ACCEPT",
		"--proto", "tcp", "--dport", "22", "--source", r.Subnet.String(), "--enable", "1", "--comment", "ssh")
	wantFW := "[OPTIONS]\n\nenable: 1\n\n[RULES]\n\nIN ACCEPT -source " + r.Subnet.String() + " -p tcp -dport 22 # ssh\nIN ACCEPT -p icmp # ping\n\n"
	if res, err := r.NodeExec(ctx, "cat", "/etc/pve/firewall/8101.fw"); err != nil || res.Stdout != wantFW {
		t.Errorf("/etc/pve/firewall/8101.fw on the node:\n%s(%v %v), want:\n%s", res.Stdout, err, res.Err(), wantFW)
	}
	rules := n.must(ctx, "pvesh", "get", "/nodes/pve/qemu/8101/firewall/rules", "--output-format", "json")
	if !strings.Contains(rules, `"dport":"22"`) || !strings.Contains(rules, `"proto":"icmp"`) {
		t.Errorf("firewall rules of 8101: %s", rules)
	}
	if got := n.must(ctx, "pvesh", "get", "/cluster/firewall/options", "--output-format", "json"); got != "{\"digest\":\"da39a3ee5e6b4b0d3255bfef95601890afd80709\"}\n" {
		t.Errorf("datacenter firewall options on a new node: %q", got)
	}

	// The template stays while a linked clone uses it; then everything goes.
	n.fails(ctx, "base volume 'local-lvm:base-9000-disk-0' is still in use by linked cloned", "qm", "destroy", tpl)
	for _, vmid := range []string{"8101", "8102"} {
		n.must(ctx, "qm", "stop", vmid)
		n.must(ctx, "qm", "destroy", vmid)
	}
	n.must(ctx, "qm", "destroy", tpl)
	if res, _ := r.NodeExec(ctx, "ls", "-A", "/etc/pve/firewall"); strings.TrimSpace(res.Stdout) != "" {
		t.Errorf("firewall files left after destroying every VM: %q", res.Stdout)
	}
	left, err := r.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if strings.HasPrefix(l, "image ") || strings.Contains(l, "-vm-") {
			t.Errorf("left after destroying every VM: %s", l)
		}
	}
}

// TestBlankDiskBootsNothing: a VM whose disk holds no root file system (an
// empty disk, or a file that is not a disk image imported as raw data)
// runs, and nothing in it answers.
func TestBlankDiskBootsNothing(t *testing.T) {
	r := rig.NewBare(t)
	n := dialNode(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := r.NodePut(ctx, "/root/notes.raw", []byte("not a disk image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.must(ctx, "qm", "create", "9100", "--scsi0", "local-lvm:0,import-from=/root/notes.raw", "--agent", "enabled=1",
		"--net0", "virtio,bridge=vmbr0", "--ipconfig0", fmt.Sprintf("ip=%s/%d", r.GuestIP(5), r.PrefixLen()), "--ide2", "local-lvm:cloudinit")
	n.must(ctx, "qm", "start", "9100")
	if !running(ctx, t, r, 9100) {
		t.Fatal("qm start exited 0 but the VM's container does not run")
	}
	if err := waitAgent(ctx, n, 9100, 20*time.Second); err == nil {
		t.Fatal("the agent of a VM without a bootable disk answered")
	}
}
