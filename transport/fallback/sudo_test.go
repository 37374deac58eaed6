package fallback

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
	"github.com/phoenix-hv/phoenix/transport/transporttest"
)

// TestSudoConformance runs the conformance suite on Sudo over the local
// shell, with a stand-in sudo first on PATH (this machine may have none):
// it insists on -n and runs the rest as the current user, so the quoting
// and the Put/Get scripts run for real.
func TestSudoConformance(t *testing.T) {
	bin := t.TempDir()
	stand := "#!/bin/sh\n[ \"$1\" = -n ] || { echo 'sudo: a password is required' >&2; exit 1; }\nshift\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(stand), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	transporttest.Run(t, func(*testing.T) transport.Transport { return Sudo{T: local.Shell{}} })
}

// printed records the printable form of every command it runs.
type printed struct {
	local.Shell
	lines []string
}

func (p *printed) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	p.lines = append(p.lines, cmd.Printable())
	return transport.Result{}, nil
}

func TestSudoMasksSecretsInTheWrappedLine(t *testing.T) {
	secret := "it's mine"
	p := &printed{}
	Sudo{T: p}.Run(context.Background(), transport.Cmd{Line: transport.Command("chpasswd-ish", secret), Secrets: []string{secret}})
	bare := strings.NewReplacer("'", "", `\`, "")
	if len(p.lines) != 1 || strings.Contains(bare.Replace(p.lines[0]), bare.Replace(secret)) {
		t.Fatalf("sudo line as printed: %q", p.lines)
	}
}
