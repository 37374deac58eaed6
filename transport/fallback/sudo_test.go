package fallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// stalled is a connection whose upload stops moving after 256 KiB, like a
// guest whose disk hung; other commands (the cleanup) answer at once.
type stalled struct {
	local.Shell
	mu    sync.Mutex
	lines []string
}

func (s *stalled) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	s.mu.Lock()
	s.lines = append(s.lines, cmd.Line)
	s.mu.Unlock()
	if cmd.Stdin == nil {
		return transport.Result{}, nil
	}
	io.CopyN(io.Discard, cmd.Stdin, 256<<10)
	<-ctx.Done()
	return transport.Result{ExitCode: -1}, fmt.Errorf("run %q: killed: %w", cmd.Line, ctx.Err())
}

// Finding 9 of issue 8: an upload through sudo ends when it falls behind
// its pace, and its private directory is removed.
func TestSudoPutTooSlow(t *testing.T) {
	s := &stalled{}
	sudo := Sudo{T: s, Rand: zeros{}, Transfer: transport.Pace{Floor: 200 * time.Millisecond, MinRate: 1 << 20}}
	err := sudo.Put(context.Background(), "/srv/image.bin", zeros{}, transport.Attrs{Mode: 0o644})
	var slow *transport.TooSlowError
	if !errors.As(err, &slow) || err.Error() != "put /srv/image.bin: transfer stalled: nothing moved for 200ms, after 262144 bytes in "+slow.After.Round(time.Millisecond).String() {
		t.Fatalf("err = %v", err)
	}
	u, _ := transport.NewUpload("/srv/image.bin", zeros{})
	if len(s.lines) != 2 || s.lines[1] != "sudo -n sh -c "+transport.Quote(u.Abort("")) {
		t.Errorf("commands %q, want the upload then its abort", s.lines)
	}
}
