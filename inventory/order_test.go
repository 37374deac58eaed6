package inventory

import (
	"reflect"
	"strings"
	"testing"
)

const chainDoc = `{"vms": [
{"vmid": 8102, "name": "app", "clone_from_vmid": 9000, "dependencies": ["8101", "103"]},
{"vmid": 8101, "name": "db", "clone_from_vmid": 9000},
{"vmid": 9000, "name": "golden", "is_template": true},
{"vmid": 8200, "name": "lone"}
]}`

func ids(vms []*VM) []int {
	out := make([]int, len(vms))
	for i, vm := range vms {
		out[i] = vm.VMID
	}
	return out
}

func TestOrder(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, chainDoc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		vmids []int
		all   bool
		want  []int
	}{
		{"all, dependencies first, else file order", nil, true, []int{9000, 8101, 8102, 8200}},
		{"one with its dependencies", []int{8102}, false, []int{9000, 8101, 8102}},
		{"dependency only once", []int{8101, 8102}, false, []int{9000, 8101, 8102}},
		{"no dependencies", []int{8200}, false, []int{8200}},
		{"given order kept", []int{8200, 9000}, false, []int{8200, 9000}},
		{"none", nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cfg.Order(tt.vmids, tt.all)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(got); !reflect.DeepEqual(g, tt.want) && !(len(g) == 0 && len(tt.want) == 0) {
				t.Errorf("Order(%v, %v) = %v, want %v", tt.vmids, tt.all, g, tt.want)
			}
		})
	}
	if got := cfg.Lookup(8102).DependsOn(); !reflect.DeepEqual(got, []int{9000, 8101}) {
		t.Errorf("8102 DependsOn = %v (103 is not in the file)", got)
	}
	if _, err := cfg.Order([]int{7777}, false); err == nil || !strings.Contains(err.Error(), "vm 7777 is not defined (defined: 8101, 8102, 8200, 9000)") {
		t.Errorf("unknown vmid: %v", err)
	}
}

func TestOrderCycle(t *testing.T) {
	// LoadConfig refuses cycles; a hand-built config must not loop either.
	cfg := &Config{File: "x.json", VMs: []*VM{
		{VMID: 8101, CloneFromVMID: 8102},
		{VMID: 8102, Dependencies: []string{"8101"}},
	}}
	_, err := cfg.Order([]int{8101}, false)
	if err == nil || !strings.Contains(err.Error(), "dependency cycle: 8101 -> 8102 -> 8101") {
		t.Errorf("err = %v", err)
	}
}
