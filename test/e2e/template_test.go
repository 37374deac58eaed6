package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

const tmplID = rig.TemplateVMID

// newBareLab is a lab on a node with no VMs, configured as `make demo`'s:
// template 9000 built from the rig's served cloud image (with its sha256),
// VM 8101 cloned from it with a share, an injected file and its firewall.
func newBareLab(t *testing.T) *lab {
	t.Helper()
	r := rig.NewBare(t)
	dir := t.TempDir()
	l := &lab{rig: r, config: filepath.Join(dir, "phoenix_vm_configs.json"), inventory: filepath.Join(dir, "inventory.yml"),
		features: filepath.Join(dir, "features")}
	if err := r.WriteInventory(l.inventory); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.features, 0o755); err != nil {
		t.Fatal(err)
	}
	l.writeFleet(t, r.CloudImageSHA256)
	return l
}

// writeFleet writes the lab's config with template 9000's image checksum.
func (l *lab) writeFleet(t *testing.T, sum string) {
	t.Helper()
	cfg := l.rig.LabConfig()
	for i := range cfg.VMs {
		if cfg.VMs[i].VMID == tmplID {
			cfg.VMs[i].TemplateImageSHA256 = sum
		}
	}
	if err := cfg.Write(l.config); err != nil {
		t.Fatal(err)
	}
}

func (l *lab) createAll(t *testing.T, extra ...string) result {
	t.Helper()
	return l.phoenix(t, append([]string{"run", "create", "--all"}, extra...)...)
}

// killedAt runs `phoenix run create --all` and kills it (SIGKILL: no
// cleanup at all) as soon as it starts the step named task of VM vmid.
func (l *lab) killedAt(t *testing.T, vmid int, task string) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, phoenixBinary(t), "--config", l.config, "--inventory", l.inventory, "--output", "json", "run", "create", "--all")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var events []event
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	killed := false
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON event: %q", sc.Text())
		}
		events = append(events, e)
		if e.Event == "task_start" && e.VMID == vmid && e.Task == task {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	io.Copy(io.Discard, out)
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("phoenix ended before step %q of vm %d; stderr:\n%s", task, vmid, stderr.String())
	}
	return events
}

// state is what the node and the VMs hold, seen from outside phoenix.
func (l *lab) state(t *testing.T) string {
	t.Helper()
	node, _ := l.node(t, fmt.Sprintf("for id in %d %d; do qm config $id 2>&1; qm status $id 2>&1; qm listsnapshot $id 2>&1; done; "+
		"cat /etc/pve/firewall/%d.fw 2>&1; ls -A /var/lib/vz/import /var/lib/vz/snippets; sha256sum /var/lib/vz/import/*", tmplID, vmid, vmid))
	return node + "\n--- guest\n" + l.guest(t, "cat /etc/fstab; sha256sum /etc/motd; findmnt -rn -o TARGET,SOURCE -M /mnt/data; true")
}

// TestFleetFromBareNode is issue 7's path on a node with no VMs: 8101 is
// planned only with its template; a wrong image checksum stops before
// anything is created; a template build killed
// half way is finished by the next run, which also builds 8101 from it; a
// dry run then writes nothing and has nothing pending; a second run changes
// nothing.
func TestFleetFromBareNode(t *testing.T) {
	t.Parallel()
	l := newBareLab(t)
	image := "/var/lib/vz/import/" + rig.CloudImageName

	// 8101 alone cannot be planned without its template: the plan names it
	// and the command that builds it; --with-deps plans both.
	alone := l.phoenix(t, "plan", fmt.Sprint(vmid))
	if alone.code != 1 || !strings.Contains(alone.stderr, "clone source vm 9000 does not exist: it is template 9000 of "+l.config+"; build it with `phoenix create 9000`") {
		t.Errorf("plan %d without its template: exit %d, stderr %q", vmid, alone.code, alone.stderr)
	}
	if deps := l.phoenix(t, "plan", fmt.Sprint(vmid), "--with-deps", "--detailed-exitcode"); deps.code != 2 || deps.summary(t).Failed != 0 {
		t.Errorf("plan %d --with-deps: exit %d, want 2 (pending, nothing failed)", vmid, deps.code)
	}

	// A wrong checksum: the download fails, no VM is created, nothing is
	// left under the image's name (no temp file either).
	l.writeFleet(t, strings.Repeat("0", 64))
	wrong := l.createAll(t)
	if wrong.code != 1 {
		t.Fatalf("run with a wrong checksum exited %d, want 1", wrong.code)
	}
	var failed event
	for _, e := range wrong.ends() {
		if e.Status == "failed" {
			failed = e
			break
		}
	}
	if failed.VMID != tmplID || failed.Task != "template image" || !strings.Contains(failed.Error, "checksum mismatch: got '"+l.rig.CloudImageSHA256) {
		t.Errorf("first failed step: vm %d %q %q; want template image of %d with the mismatch", failed.VMID, failed.Task, failed.Error, tmplID)
	}
	if out, code := l.node(t, fmt.Sprintf("qm config %d", tmplID)); code == 0 || !strings.Contains(out, "does not exist") {
		t.Errorf("after the mismatch qm config %d says (exit %d) %q", tmplID, code, out)
	}
	if out, _ := l.node(t, "ls -A /var/lib/vz/import"); strings.TrimSpace(out) != "" {
		t.Errorf("after the mismatch /var/lib/vz/import holds %q, want nothing", out)
	}

	// The right checksum; the run is killed while the template boots.
	l.writeFleet(t, l.rig.CloudImageSHA256)
	l.killedAt(t, tmplID, "cloud-init")
	if out, _ := l.node(t, fmt.Sprintf("qm config %d", tmplID)); !strings.Contains(out, "scsi0: ") || strings.Contains(out, "template: 1") {
		t.Fatalf("after the kill, vm %d should exist and not be a template yet:\n%s", tmplID, out)
	}

	// The next run finishes the template from where it was, then builds 8101.
	first := l.createAll(t)
	if first.code != 0 {
		t.Fatalf("create --all exit %d", first.code)
	}
	status := map[string]string{}
	for _, e := range first.ends() {
		status[fmt.Sprintf("%d %s", e.VMID, e.Task)] = e.Status
	}
	for step, want := range map[string]string{
		"9000 template image": "ok", "9000 create from image": "ok", "9000 clean for templating": "changed",
		"9000 convert to template": "changed", "8101 clone from template": "changed", "8101 firewall": "changed",
	} {
		if status[step] != want {
			t.Errorf("step %s: %q, want %s", step, status[step], want)
		}
	}
	cfg9000, _ := l.node(t, fmt.Sprintf("qm config %d", tmplID))
	if !strings.Contains(cfg9000, "\ntemplate: 1\n") || strings.Contains(cfg9000, "cicustom") {
		t.Errorf("qm config %d has no template: 1, or still names its host key snippet:\n%s", tmplID, cfg9000)
	}
	if out, _ := l.node(t, "sha256sum "+image); !strings.HasPrefix(out, l.rig.CloudImageSHA256+" ") {
		t.Errorf("image on the node: %q, want sha256 %s", out, l.rig.CloudImageSHA256)
	}
	if out, code := l.node(t, fmt.Sprintf("test -e /var/lib/vz/snippets/phoenix-%d-hostkey.yml", tmplID)); code == 0 {
		t.Errorf("the template's host key snippet is still on the node %s", out)
	}
	pins, _ := os.ReadFile(l.rig.GuestKnownHosts)
	if strings.Contains(string(pins), fmt.Sprintf("phoenix-vm-%d ", tmplID)) {
		t.Errorf("the template's host key is still pinned:\n%s", pins)
	}
	// 8101 runs the served image's bytes as its template left them: cleaned,
	// so cloud-init ran in it once, as a new instance, and logged only that.
	if out := l.guest(t, "cat "+rig.CloudImageMarker); !strings.HasPrefix(out, "phoenix-rig cloud image") {
		t.Errorf("8101 does not run the cloud image: %s holds %q", rig.CloudImageMarker, out)
	}
	if out := l.guest(t, `ls /var/lib/cloud/instances | wc -l; grep -c "running 'init-local'" /var/log/cloud-init.log`); out != "1\n1\n" {
		t.Errorf("8101's cloud-init instances and init-local runs: %q, want one each (the template's were cleaned)", out)
	}
	if out := l.guest(t, "findmnt -rn -o TARGET -M /mnt/data"); strings.TrimSpace(out) != "/mnt/data" {
		t.Errorf("/mnt/data is not mounted in 8101: %q", out)
	}
	if out := l.guest(t, "cat /etc/motd"); out != l.rig.InjectContent() {
		t.Errorf("/etc/motd in 8101 is %q, want the node's file", out)
	}
	fw, _ := l.node(t, fmt.Sprintf("cat /etc/pve/firewall/%d.fw", vmid))
	if !strings.Contains(fw, "enable: 1\n") || !strings.Contains(fw, "IN ACCEPT -source "+l.rig.Subnet.String()+" -p tcp -dport 22 # ssh from the rig network\nIN ACCEPT -p icmp # ping\n") {
		t.Errorf("/etc/pve/firewall/%d.fw:\n%s", vmid, fw)
	}
	if cfg, _ := l.node(t, fmt.Sprintf("qm config %d", vmid)); !strings.Contains(cfg, ",firewall=1") {
		t.Errorf("net0 of %d has no firewall=1:\n%s", vmid, cfg)
	}

	// A dry run in between: nothing pending (exit 0 with --detailed-exitcode), nothing written.
	before := l.state(t)
	plan := l.createAll(t, "--dry-run", "--detailed-exitcode")
	if plan.code != 0 {
		t.Errorf("dry run exit %d, want 0 (nothing pending)", plan.code)
	}
	if after := l.state(t); after != before {
		t.Errorf("dry run changed the node or a guest:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// A second run changes nothing.
	second := l.createAll(t)
	if s := second.summary(t); second.code != 0 || s.Changed != 0 || s.Failed != 0 {
		t.Errorf("second run: exit %d, changed %d, failed %d; want 0, 0, 0", second.code, s.Changed, s.Failed)
	}
	if after := l.state(t); after != before {
		t.Errorf("second run changed the node or a guest:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
