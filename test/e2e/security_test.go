package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/test/rig"
)

// TestUploadsIgnorePlantedSymlinks: an unprivileged guest user owns the
// directory a file is injected into and plants symlinks there, at the
// destination and at the fixed temp name phoenix once wrote as root, each
// pointing at a root-only file. Through the agent and over SSH (sudo, the
// rig's guest user is not root), the injection leaves both targets as they
// were and the destination a regular file root wrote with the node's bytes.
func TestUploadsIgnorePlantedSymlinks(t *testing.T) {
	for _, channel := range []string{"agent", "ssh"} {
		t.Run(channel, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, nil)
			if channel == "ssh" {
				if err := l.rig.SetFault(context.Background(), vmid, "agent-off", "1"); err != nil {
					t.Fatal(err)
				}
			}
			if res := l.create(t); res.code != 0 {
				t.Fatalf("first create: exit %d", res.code)
			}
			const drop, dest = "/home/mallory/drop", "/home/mallory/drop/app.conf"
			l.guest(t, "useradd -m mallory && install -d -o mallory -m 755 "+drop+
				" && printf 'root only\\n' > /etc/canary-dest && printf 'root only\\n' > /etc/canary-tmp && chmod 600 /etc/canary-*")
			// As mallory: whatever is planted, mallory could plant.
			l.guest(t, "runuser -u mallory -- sh -c 'ln -s /etc/canary-dest "+dest+" && ln -s /etc/canary-tmp "+drop+"/.app.conf.phoenix-tmp'")
			l.writeConfig(t, func(vm *rig.ConfigVM) {
				vm.Features = []string{"hello"}
				vm.UserConfig.Password = password
				vm.FileInjections = append(vm.FileInjections,
					inventory.FileInjection{Source: blobSource, Destination: blobDest, Mode: "0600"},
					inventory.FileInjection{Source: rig.InjectSource, Destination: dest, Mode: "0644"})
			})
			res := l.create(t)
			if res.code != 0 {
				t.Fatalf("create with the planted symlinks: exit %d", res.code)
			}
			for _, u := range guestTransports(res) {
				if !strings.HasSuffix(u, "="+channel) {
					t.Errorf("step %s, want %s", u, channel)
				}
			}
			if got := l.guest(t, "cat /etc/canary-dest /etc/canary-tmp; stat -c '%a %U' /etc/canary-dest /etc/canary-tmp"); got != "root only\nroot only\n600 root\n600 root\n" {
				t.Errorf("the symlinks' targets were changed:\n%s", got)
			}
			want := sha256.Sum256([]byte(l.rig.InjectContent()))
			got := l.guest(t, "stat -c '%F %U:%G %a' "+dest+" && sha256sum < "+dest)
			if wantOut := fmt.Sprintf("regular file root:root 644\n%s  -\n", hex.EncodeToString(want[:])); got != wantOut {
				t.Errorf("destination:\n%s\nwant:\n%s", got, wantOut)
			}
			if got := l.guest(t, "ls -A "+drop); got != ".app.conf.phoenix-tmp\napp.conf\n" {
				t.Errorf("%s holds:\n%s\nwant the planted temp-name symlink and the destination only", drop, got)
			}
			if s := l.create(t).summary(t); s.Changed != 0 {
				t.Errorf("a run after the injection changed %d steps", s.Changed)
			}
		})
	}
}
