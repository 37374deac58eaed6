package main

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/test/rig"
)

func TestLabNodes(t *testing.T) {
	for v, want := range map[string]int{"": 1, "1": 1, "2": 2, "3": 3, "4": 0, "0": 0, "two": 0} {
		t.Setenv("LAB_NODES", v)
		n, err := labNodes()
		if n != want || (err != nil) != (want == 0) {
			t.Errorf("LAB_NODES=%q: %d, %v; want %d", v, n, err, want)
		}
	}
}

// What LAB_NODES=2 make lab-up writes for a cluster rig: an inventory with
// both nodes (each its port, Proxmox name and NFS address), the template
// and 8101 on the first node, 8102 on the second.
func TestLabWritesTheCluster(t *testing.T) {
	dir := t.TempDir()
	r := &rig.Rig{ID: "t1", Dir: dir, Subnet: netip.MustParsePrefix("10.210.7.0/24"), NodeHost: "127.0.0.1", NodePort: 40001,
		NodeKey: filepath.Join(dir, "node_ed25519"), GuestKey: filepath.Join(dir, "guest_ed25519"),
		KnownHosts: filepath.Join(dir, "known_hosts"), GuestKnownHosts: filepath.Join(dir, "guest_known_hosts"),
		CloudImageURL: "http://10.210.7.3/" + rig.CloudImageName, CloudImageSHA256: strings.Repeat("ab", 32),
		GuestPubKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUfAK618WpaLtS/jzITdU7UO5b5GFN+YCDSEsLc9ZY3 rig",
		Cluster:     []rig.ClusterNode{{Name: "pve1", Port: 40001, IP: "10.210.7.2"}, {Name: "pve2", Port: 40002, IP: "10.210.7.12"}}}
	if err := write(r, dir); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.LoadInventory(filepath.Join(dir, "inventory.yml"), filepath.Join(dir, "no-ssh-config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range r.Cluster {
		got := inv.Nodes[n.Name]
		if got == nil || got.Port != n.Port || got.PVENode != n.Name || got.NFSServer != n.IP || got.Address != "127.0.0.1" {
			t.Errorf("inventory node %s: %+v", n.Name, got)
		}
	}
	cfg, err := inventory.LoadConfig(filepath.Join(dir, "phoenix_vm_configs.json"))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int]string{rig.TemplateVMID: "pve1", rig.TestVMID: "pve1", rig.ClusterVMID: "pve2"} {
		vm := cfg.Lookup(id)
		if vm == nil {
			t.Fatalf("no vm %d", id)
		}
		if n, err := inv.Home(cfg, vm); err != nil || n.Name != want {
			t.Errorf("vm %d on %v, %v; want %s", id, n, err, want)
		}
	}
	if tpl := cfg.Lookup(rig.TemplateVMID); tpl.StoragePool != rig.SharedStorage {
		t.Errorf("template on %q, want %s", tpl.StoragePool, rig.SharedStorage)
	}
	if vm := cfg.Lookup(rig.ClusterVMID); vm.Firewall == nil || !vm.Firewall.Enabled || vm.NetworkConfig.IP != "10.210.7.102/24" {
		t.Errorf("8102: %+v", vm)
	}
}
