package rig

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
)

// A two-node cluster rig: one /etc/pve seen by both nodes, each node's own
// view of its local directory and .members, own host keys, and an sshd
// that can be turned off and on; the inventory and config phoenix gets.
func TestClusterRig(t *testing.T) {
	r := NewCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	exec := func(node string, script string) string {
		t.Helper()
		res, err := r.NodeExecOn(ctx, node, "sh", "-c", script)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %s: %v %q %q", node, script, err, res.Stdout, res.Stderr)
		}
		return res.Stdout
	}
	for _, n := range []string{"pve1", "pve2"} {
		if got := exec(n, "readlink -f /etc/pve/local /etc/pve/qemu-server; hostname"); got != "/etc/pve/nodes/"+n+"\n/etc/pve/nodes/"+n+"/qemu-server\n"+n+"\n" {
			t.Errorf("%s: local directories and hostname %q", n, got)
		}
		if got := exec(n, "cat /etc/pve/.members"); !strings.Contains(got, `"nodename": "`+n+`"`) || !strings.Contains(got, `"pve2": { "id": 2, "online": 1, "ip": "`+r.Cluster[1].IP+`"}`) {
			t.Errorf("%s: .members\n%s", n, got)
		}
	}
	exec("pve1", "echo from-pve1 > /etc/pve/firewall/probe.fw")
	if got := exec("pve2", "cat /etc/pve/firewall/probe.fw; grep -c '^nfs: "+SharedStorage+"$' /etc/pve/storage.cfg"); got != "from-pve1\n1\n" {
		t.Errorf("pve2 does not share pve1's /etc/pve: %q", got)
	}

	// Each node's host keys, pinned under its own address.
	keys := map[string]string{}
	for _, n := range r.Cluster {
		keys[n.Name] = exec(n.Name, "cat /etc/ssh/ssh_host_ed25519_key.pub")
	}
	if keys["pve1"] == keys["pve2"] {
		t.Error("both nodes have the same host key")
	}
	dial := func(node string) error {
		addr, err := r.NodeAddrOf(node)
		if err != nil {
			return err
		}
		return r.login(addr)
	}
	for _, n := range r.Cluster {
		if err := dial(n.Name); err != nil {
			t.Errorf("ssh to %s with its pinned key: %v", n.Name, err)
		}
	}

	// Node 2's sshd off: no connection; on again: the same port answers.
	if err := r.SetNodeSSH(ctx, "pve2", false); err != nil {
		t.Fatal(err)
	}
	if err := dial("pve2"); err == nil {
		t.Error("pve2 answers SSH while it is off")
	}
	if err := dial("pve1"); err != nil {
		t.Errorf("pve1 with pve2 off: %v", err)
	}
	if err := r.SetNodeSSH(ctx, "pve2", true); err != nil {
		t.Fatal(err)
	}
	if err := dial("pve2"); err != nil {
		t.Errorf("pve2 on again: %v", err)
	}

	// What phoenix reads.
	dir := t.TempDir()
	if err := r.WriteInventory(filepath.Join(dir, "inventory.yml")); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.LoadInventory(filepath.Join(dir, "inventory.yml"), filepath.Join(dir, "no-ssh-config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ClusterConfig().Write(filepath.Join(dir, "phoenix_vm_configs.json")); err != nil {
		t.Fatal(err)
	}
	cfg, err := inventory.LoadConfig(filepath.Join(dir, "phoenix_vm_configs.json"))
	if err != nil {
		t.Fatal(err)
	}
	for vmid, want := range map[int]string{TemplateVMID: "pve1", TestVMID: "pve1", ClusterVMID: "pve2"} {
		vm := cfg.Lookup(vmid)
		if vm == nil {
			t.Fatalf("no vm %d in the cluster config", vmid)
		}
		n, err := inv.Home(cfg, vm)
		if err != nil || n.Name != want || n.NFSServer != r.Cluster[map[string]int{"pve1": 0, "pve2": 1}[want]].IP || n.PVENode != want {
			t.Errorf("vm %d on %+v, %v; want %s", vmid, n, err, want)
		}
	}
	if tpl := cfg.Lookup(TemplateVMID); tpl.StoragePool != SharedStorage {
		t.Errorf("template storage %q, want %s", tpl.StoragePool, SharedStorage)
	}
}
