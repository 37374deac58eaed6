package fallback

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/phoenix-hv/phoenix/transport"
	sshtransport "github.com/phoenix-hv/phoenix/transport/ssh"
)

// pinState remembers whether the guest's host key still needs pinning.
type pinState struct {
	mu   sync.Mutex
	done bool      // pinned, already pinned, or given up
	last time.Time // last attempt
}

// pinEvery spaces attempts while cloud-init may still replace the keys.
const pinEvery = 10 * time.Second

// pinScript prints the guest's public host keys once cloud-init can no
// longer replace them, else "pending". cloud-init deletes and regenerates
// host keys on an instance's first boot (its ssh module), so a key read
// before that would be pinned only to be "changed" minutes later. The ssh
// module has run when this boot's cloud-init has finished, or when this
// boot's cloud-init has started (status.json in /run) and the instance has
// the module's semaphore.
const pinScript = `if command -v cloud-init >/dev/null 2>&1 && [ ! -e /run/cloud-init/result.json ] && ` +
	`! { [ -e /run/cloud-init/status.json ] && [ -e /var/lib/cloud/instance/sem/config_ssh ]; }; then echo pending; ` +
	`else cat /etc/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ecdsa_key.pub /etc/ssh/ssh_host_rsa_key.pub 2>/dev/null; true; fi`

// maybePin pins the guest's SSH host key, read through the agent (a trusted
// channel), when no key is pinned for the VM yet. It never fails the step
// that triggered it: what goes wrong is logged.
func (g *Guest) maybePin(ctx context.Context) {
	if g.o.KnownHosts == "" || g.o.Agent == nil || !g.pin.mu.TryLock() {
		return
	}
	defer g.pin.mu.Unlock()
	if g.pin.done || !g.pin.last.IsZero() && time.Since(g.pin.last) < pinEvery {
		return
	}
	g.pin.last = time.Now()
	done, err := g.pinOnce(ctx)
	if err != nil {
		g.o.Log("vm %d: SSH host key not pinned: %v", g.o.VMID, err)
	}
	g.pin.done = done
}

// pinOnce reports done when nothing is left to try.
func (g *Guest) pinOnce(ctx context.Context) (done bool, err error) {
	alias := sshtransport.GuestHostKeyAlias(g.o.VMID)
	pinned, err := isPinned(g.o.KnownHosts, alias)
	if err != nil || pinned {
		return true, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := g.o.Agent.Run(ctx, transport.Cmd{Line: pinScript})
	switch {
	case errors.Is(err, transport.ErrAgentUnavailable):
		return false, nil // the next step finds out and falls back
	case err != nil:
		return true, fmt.Errorf("read host key through the agent: %w", err)
	case strings.TrimSpace(string(res.Stdout)) == "pending":
		return false, nil
	}
	key, err := sshtransport.ParseHostKey(res.Stdout)
	if err != nil {
		return true, fmt.Errorf("read host key through the agent: %w", err)
	}
	if err := g.o.PinHostKey(g.o.KnownHosts, alias, key); err != nil {
		return true, err
	}
	g.o.Log("vm %d: pinned SSH host key %s %s as %s (read through the guest agent)", g.o.VMID, key.Type(), ssh.FingerprintSHA256(key), alias)
	return true, nil
}

// isPinned reports whether file holds any key for alias (plain or hashed
// entry), looked up as the SSH transport does: alias on port 22.
func isPinned(file, alias string) (bool, error) {
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	check, err := knownhosts.New(file)
	if err != nil {
		return false, err
	}
	// Any key will do: a mismatch lists the keys that are pinned.
	probe, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	if err != nil {
		return false, err
	}
	err = check(net.JoinHostPort(alias, "22"), &net.TCPAddr{IP: net.IPv4zero, Port: 22}, probe)
	var ke *knownhosts.KeyError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ke):
		return len(ke.Want) > 0, nil
	}
	return false, fmt.Errorf("known_hosts %s: %w", file, err)
}
