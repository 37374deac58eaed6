package inventory

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSecretNeverMarshalled(t *testing.T) {
	cfg, err := LoadConfig("testdata/phoenix_vm_configs.json")
	if err != nil {
		t.Fatal(err)
	}
	vm := cfg.Lookup(8101)
	const password = "hunter22-never-printed"
	for name, v := range map[string]any{"vm": vm, "config": cfg, "vars": vm.Vars()} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), password) {
			t.Errorf("json of %s holds the password: %s", name, b)
		}
		if !strings.Contains(string(b), `"password":"(sensitive)"`) {
			t.Errorf("json of %s does not mark the password: %s", name, b)
		}
	}
}

func TestVars(t *testing.T) {
	cfg, err := LoadConfig("testdata/original_vm_configs.json")
	if err != nil {
		t.Fatal(err)
	}
	vars := cfg.Lookup(1001).Vars()
	if v, ok := vars["vmid"].(int); !ok || v != 1001 {
		t.Errorf("vmid = %#v, want int 1001", vars["vmid"])
	}
	if v, ok := vars["storage_pool"].(string); !ok || v != "quickOS-vm-disks" {
		t.Errorf("storage_pool (from vm_defaults) = %#v", vars["storage_pool"])
	}
	shares, _ := vars["nfs_shares"].([]any)
	if len(shares) != 1 || shares[0].(map[string]any)["guest_path"] != "/mnt/persistent" || shares[0].(map[string]any)["options"] != DefaultNFSOptions {
		t.Errorf("nfs_shares = %#v", vars["nfs_shares"])
	}
	traefik, _ := vars["traefik_service"].(map[string]any)
	if traefik["name"] != "portainer" || traefik["port"] != 9443 {
		t.Errorf("extra traefik_service = %#v", vars["traefik_service"])
	}
	if vars["final_snapshot"] != "final-form" || vars["agent_timeout_seconds"] != 300 {
		t.Errorf("phoenix defaults: %#v %#v", vars["final_snapshot"], vars["agent_timeout_seconds"])
	}

	p, err := LoadConfig("testdata/phoenix_vm_configs.json")
	if err != nil {
		t.Fatal(err)
	}
	uc, _ := p.Lookup(8101).Vars()["user_config"].(map[string]any)
	if s, ok := uc["password"].(Secret); !ok || s.Reveal() != "hunter22-never-printed" {
		t.Errorf("user_config.password = %#v, want the Secret", uc["password"])
	}
	if _, ok := p.Lookup(9000).Vars()["user_config"].(map[string]any)["password"]; ok {
		t.Error("a VM without a password has one in vars")
	}
}
