package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/test/rig"
)

func TestLabUpInfoDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "lab")
	var out strings.Builder
	if err := up(ctx, &out, dir); err != nil {
		t.Fatalf("lab up: %v", err)
	}
	r, err := rig.Attach(ctx, statePath(dir))
	if err != nil {
		t.Fatalf("lab up left no usable rig.json: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() }) // in case down fails
	if !strings.Contains(out.String(), "./bin/phoenix run playbooks/create.yml --all --config .lab/phoenix_vm_configs.json --inventory .lab/inventory.yml") {
		t.Errorf("lab up does not print the next command:\n%s", out.String())
	}
	for _, f := range []string{"inventory.yml", "phoenix_vm_configs.json", "known_hosts", "node_ed25519", "guest_ed25519"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("lab up: %v", err)
		}
	}
	if _, err := inventory.LoadInventory(filepath.Join(dir, "inventory.yml"), filepath.Join(dir, "no-ssh-config")); err != nil {
		t.Errorf("inventory: %v", err)
	}
	cfg, err := inventory.LoadConfig(filepath.Join(dir, "phoenix_vm_configs.json"))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// The lab's node is bare; the config builds 9000 from the served image
	// and gives 8101 its firewall.
	if res, err := r.NodeExec(ctx, "qm", "list"); err != nil || res.ExitCode != 0 || res.Stdout != "" {
		t.Errorf("qm list on the lab's node: %q, %v %v (want no VMs)", res.Stdout, err, res.Err())
	}
	tpl, vm := cfg.Lookup(rig.TemplateVMID), cfg.Lookup(rig.TestVMID)
	if tpl == nil || !tpl.IsTemplate || tpl.TemplateImage != r.CloudImageURL || r.CloudImageURL == "" || tpl.TemplateImageSHA256 != r.CloudImageSHA256 {
		t.Errorf("template %d in the lab config: %+v", rig.TemplateVMID, tpl)
	}
	if vm == nil || vm.Firewall == nil || !vm.Firewall.Enabled || len(vm.Firewall.Rules) != 2 || vm.Firewall.Rules[1].Proto != "icmp" {
		t.Errorf("firewall of %d in the lab config: %+v", rig.TestVMID, vm)
	}
	// The image the config names is served on the rig network with that checksum.
	if res, err := r.NodeExec(ctx, "sh", "-c", "wget -q -O - "+r.CloudImageURL+" | sha256sum"); err != nil || !strings.HasPrefix(res.Stdout, r.CloudImageSHA256+" ") {
		t.Errorf("sha256 of %s fetched on the node: %q, %v; want %s", r.CloudImageURL, res.Stdout, err, r.CloudImageSHA256)
	}
	// The injection source the config names is on the node.
	if res, err := r.NodeExec(ctx, "cat", rig.InjectSource); err != nil || res.Stdout != r.InjectContent() {
		t.Errorf("injection source on the node: %q, %v", res.Stdout, err)
	}

	out.Reset()
	if err := up(ctx, &out, dir); err != nil || !strings.Contains(out.String(), "is up already") {
		t.Errorf("second lab up: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := info(ctx, &out, dir); err != nil || !strings.Contains(out.String(), r.GuestContainer(rig.TestVMID)) {
		t.Errorf("lab info: %v\n%s", err, out.String())
	}

	if left, err := r.Leftovers(ctx); err != nil || len(left) != 3 {
		t.Errorf("a lab that is up: Leftovers = %q, %v; want its node, mirror and network", left, err)
	}
	out.Reset()
	if err := down(ctx, &out, dir); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab down left %s: %v", dir, err)
	}
	if left, err := r.Leftovers(ctx); err != nil || len(left) != 0 {
		t.Errorf("lab down left behind: %q, %v", left, err)
	}
	out.Reset()
	if err := down(ctx, &out, dir); err != nil || !strings.Contains(out.String(), "no lab is up") {
		t.Errorf("lab down twice: %v %q", err, out.String())
	}
}
