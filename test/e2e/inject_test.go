package e2e

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/test/rig"
)

// TestLargeFileOverSSH: while the agent is the channel, a file of 8 MiB or
// more is injected over the guest's SSH, several times faster
// (docs/BENCHMARKS.md); the other steps stay on the agent, the file
// arrives whole with its mode, and a second run changes nothing.
func TestLargeFileOverSSH(t *testing.T) {
	t.Parallel()
	const src, dest = "/root/rig-files/large.bin", "/srv/large.bin"
	l := newLab(t, func(vm *rig.ConfigVM) {
		vm.FileInjections = append(vm.FileInjections, inventory.FileInjection{Source: src, Destination: dest, Mode: "0640"})
	})
	large := make([]byte, 12<<20)
	if _, err := rand.Read(large); err != nil {
		t.Fatal(err)
	}
	if err := l.rig.NodePut(context.Background(), src, large, 0o600); err != nil {
		t.Fatal(err)
	}
	sshLogins := func() int {
		n, _ := strconv.Atoi(strings.TrimSpace(l.guest(t, "grep -c 'Accepted publickey' /var/log/phoenix-guest-init.log || true")))
		return n
	}

	res := l.create(t)
	if res.code != 0 {
		t.Fatalf("create: %s", res)
	}
	overSSH := false
	for _, e := range res.events {
		overSSH = overSSH || e.Event == "log" && strings.Contains(e.Text, dest+" (12 MiB) goes over ssh ")
	}
	if !overSSH {
		t.Errorf("no log line says %s went over SSH:\n%s", dest, res)
	}
	for _, u := range guestTransports(res) {
		if !strings.HasSuffix(u, "=agent") {
			t.Errorf("step %s, want the agent: only the large file takes SSH", u)
		}
	}
	if n := sshLogins(); n < 1 {
		t.Errorf("the guest's sshd accepted %d logins, want the one that carried the file", n)
	}
	if got, want := l.guest(t, "sha256sum < "+dest+"; stat -c '%a %U:%G' "+dest), sha256Hex(large)+"  -\n640 root:root\n"; got != want {
		t.Errorf("%s in the guest:\n%s\nwant:\n%s", dest, got, want)
	}
	if again := l.create(t); again.code != 0 || again.summary(t).Changed != 0 {
		t.Errorf("second run: exit %d, changed %d; want 0 and 0", again.code, again.summary(t).Changed)
	}
}
