package pvesimrig

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/tasks/pve"
	"github.com/phoenix-hv/phoenix/test/rig"
)

// TestStateReadersAgree: phoenix reads a VM's state from the node's files
// (config file, pid file, /proc), without qm; what it reads must be what qm
// config, qm status and qm listsnapshot say, in every state the rig can put
// a VM in. It also checks the node's files are where Proxmox keeps them.
func TestStateReadersAgree(t *testing.T) {
	r := rig.New(t)
	n := dialNode(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const vmid = 8101
	id := strconv.Itoa(vmid)

	agree := func(when string, vmid int, wantStatus string) {
		t.Helper()
		files, ok, err := pve.ReadStateFiles(ctx, n.c, vmid)
		if err != nil || !ok {
			t.Fatalf("%s: vm %d from the files: ok %v, %v", when, vmid, ok, err)
		}
		qm, err := pve.ReadStateQM(ctx, n.c, vmid)
		if err != nil {
			t.Fatalf("%s: vm %d through qm: %v", when, vmid, err)
		}
		files.PasswordHash = "" // qm config masks it: only the files have it
		if !reflect.DeepEqual(files, qm) {
			t.Errorf("%s: vm %d:\nfrom the files %+v\nthrough qm     %+v", when, vmid, files, qm)
		}
		if qm.Status != wantStatus {
			t.Errorf("%s: vm %d is %q, want %q", when, vmid, qm.Status, wantStatus)
		}
	}

	agree("a template", rig.TemplateVMID, "stopped")
	agree("a VM that does not exist", 8199, "")
	prepare(ctx, t, r, n, vmid, 1)
	n.must(ctx, "qm", "set", id, "--description", "web: the front end\nsecond line, 100% ünïcødé", "--cipassword", "$5$salt$hash",
		"--tags", "a;b", "--onboot", "1")
	agree("cloned and configured, stopped", vmid, "stopped")

	n.must(ctx, "qm", "start", id)
	agree("running", vmid, "running")
	if err := waitAgent(ctx, n, vmid, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	// Running: cores and memory wait for the next start, onboot goes away then.
	n.must(ctx, "qm", "set", id, "--cores", "2", "--memory", "1536", "--delete", "onboot")
	agree("pending changes", vmid, "running")
	if pending := n.must(ctx, "qm", "pending", id); !strings.Contains(pending, "new cores: 2") {
		t.Errorf("qm pending %s lacks the pending cores:\n%s", id, pending)
	}

	n.must(ctx, "qm", "snapshot", id, "first", "--description", "before: the change")
	n.must(ctx, "qm", "snapshot", id, "second")
	agree("two snapshots", vmid, "running")

	n.must(ctx, "qm", "set", id, "--lock", "backup")
	agree("locked", vmid, "running")
	n.must(ctx, "qm", "unlock", id)

	// The container dies behind qm's back: the QEMU stand-in goes with it.
	if res, err := r.NodeExec(ctx, "cat", "/var/run/qemu-server/"+id+".pid"); err != nil || res.ExitCode != 0 {
		t.Fatalf("pid file: %v %v", err, res.Err())
	}
	if res, err := r.GuestExec(ctx, vmid, "kill", "-TERM", "1"); err != nil || res.ExitCode != 0 {
		t.Fatalf("stop the guest from inside: %v %v", err, res.Err())
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, ok, err := pve.ReadStateFiles(ctx, n.c, vmid)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if st.Status == "stopped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the VM's container stopped, its kvm stand-in still runs after a minute")
		}
		time.Sleep(500 * time.Millisecond)
	}
	agree("the guest powered off", vmid, "stopped")

	n.must(ctx, "qm", "start", id) // applies the pending changes
	n.must(ctx, "qm", "stop", id)
	agree("pending applied, stopped again", vmid, "stopped")

	// Where the files are: pmxcfs's layout, the pid file gone after a stop.
	out, err := r.NodeExec(ctx, "sh", "-c", "readlink /etc/pve/qemu-server; readlink /etc/pve/local; "+
		"test -f /etc/pve/nodes/pve/qemu-server/"+id+".conf && echo conf; grep -c '\""+id+"\"' /etc/pve/.vmlist; "+
		"test -e /var/run/qemu-server/"+id+".pid || echo no pid file")
	if err != nil {
		t.Fatal(err)
	}
	if want := "nodes/pve/qemu-server\nnodes/pve\nconf\n1\nno pid file\n"; out.Stdout != want {
		t.Errorf("node files:\n%s\nwant:\n%s", out.Stdout, want)
	}

	n.must(ctx, "qm", "destroy", id)
	agree("destroyed", vmid, "")
	if res, err := r.NodeExec(ctx, "grep", "-c", fmt.Sprintf(`"%d"`, vmid), "/etc/pve/.vmlist"); err != nil || strings.TrimSpace(res.Stdout) != "0" {
		t.Errorf(".vmlist still lists %d: %q %v", vmid, res.Stdout, err)
	}
}
