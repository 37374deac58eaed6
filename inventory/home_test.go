package inventory

import (
	"strings"
	"testing"
)

func TestHome(t *testing.T) {
	invPath, sshPath := writeInventory(t, "nodes:\n  pve1: {}\n  pve2: {}\n  pve3: {}\ndefault_node: pve1\nvms:\n  8103: pve3\n  8104: pve2\n", "")
	inv, err := LoadInventory(invPath, sshPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"vm_defaults": {"node": "pve2"},
"vms": [
  {"vmid": 8101, "name": "a", "node": "pve1"},
  {"vmid": 8102, "name": "b"},
  {"vmid": 8103, "name": "c"},
  {"vmid": 8104, "name": "d", "node": "pve2"}]}`
	cfg, err := LoadConfig(writeConfig(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	// The VM's own node, the inventory's vms:, then vm_defaults.
	want := map[int]string{8101: "pve1", 8102: "pve2", 8103: "pve3", 8104: "pve2"}
	for _, vm := range cfg.VMs {
		n, err := inv.Home(cfg, vm)
		if err != nil || n.Name != want[vm.VMID] {
			t.Errorf("vm %d: home %v, %v; want %s", vm.VMID, n, err, want[vm.VMID])
		}
	}
	noDefaults, err := LoadConfig(writeConfig(t, `{"vms": [{"vmid": 8102, "name": "b"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := inv.Home(noDefaults, noDefaults.VMs[0]); err != nil || n.Name != "pve1" {
		t.Errorf("without any node: %v, %v; want default_node pve1", n, err)
	}

	bad := []struct{ name, doc, marker, msg string }{
		{"unknown node", `{"vms": [{"vmid": 8101, "name": "a", "node": "pve9"}]}`, `"pve9"`,
			`/vms/0/node: unknown node "pve9": ` + invPath + ` has nodes pve1, pve2, pve3`},
		{"unknown default", `{"vm_defaults": {"node": "pve9"}, "vms": [{"vmid": 8101, "name": "a"}]}`, `"pve9"`,
			`/vm_defaults/node: unknown node "pve9"`},
		{"two homes", `{"vms": [{"vmid": 8103, "name": "c", "node": "pve1"}]}`, `"pve1"`,
			`/vms/0/node: places vm 8103 on node pve1, but ` + invPath + ` places it on pve3 (vms: 8103): name its node in one place`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.doc)
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = inv.Home(cfg, cfg.VMs[0])
			want := path + ":" + lineColOf(t, tc.doc, tc.marker) + ": " + tc.msg
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %v\nwant %s", err, want)
			}
		})
	}
}

func TestPVEName(t *testing.T) {
	for _, tc := range []struct {
		n    Node
		want string
	}{
		{Node{Name: "pve1", PVENode: "localhost"}, "pve1"},
		{Node{Name: "lab-a", PVENode: "pve-a"}, "pve-a"},
		{Node{Name: "pve2"}, "pve2"},
	} {
		if got := tc.n.PVEName(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.n, got, tc.want)
		}
	}
}
