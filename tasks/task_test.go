package tasks

import (
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
)

func TestDecodeRevealsSecretsAndRefusesUnknown(t *testing.T) {
	var p struct {
		Password string   `json:"cipassword"`
		Keys     []string `json:"sshkeys"`
	}
	params := map[string]any{"cipassword": inventory.Secret("hunter22"), "sshkeys": []any{"ssh-ed25519 AAAA"}}
	if err := Decode(params, &p); err != nil {
		t.Fatal(err)
	}
	if p.Password != "hunter22" || len(p.Keys) != 1 {
		t.Fatalf("decoded %+v", p)
	}
	if err := Decode(map[string]any{"nope": 1}, &p); err == nil {
		t.Fatal("unknown parameter accepted")
	}
}
