package tasks

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/transport"
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

// boundedRunner records the Timeout of each command.
type boundedRunner struct{ timeouts []time.Duration }

func (b *boundedRunner) Run(_ context.Context, cmd transport.Cmd) (transport.Result, error) {
	b.timeouts = append(b.timeouts, cmd.Timeout)
	return transport.Result{}, nil
}

func (b *boundedRunner) Put(context.Context, string, io.Reader, transport.Attrs) error { return nil }
func (b *boundedRunner) Get(context.Context, string, io.Writer) error                  { return nil }
func (b *boundedRunner) Name() string                                                  { return "bounded" }

// A probe not served by the runner's batch is bounded on its own.
func TestGuestProbeIsBounded(t *testing.T) {
	g := &boundedRunner{}
	env := &Env{Guest: func(context.Context) (Guest, error) { return g, nil }}
	if _, err := env.GuestProbe(context.Background(), "test -d /mnt/data"); err != nil {
		t.Fatal(err)
	}
	if len(g.timeouts) != 1 || g.timeouts[0] != ProbeTimeout {
		t.Errorf("probe timeouts %v, want [%v]", g.timeouts, ProbeTimeout)
	}
}
