package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/test/rig"
)

// The fault matrix for the guest's files: each test breaks something while
// phoenix writes into the guest, then checks from outside phoenix (docker
// exec) that nothing was lost, no half-written file under a final name and
// no duplicated fstab line, and that a re-run converges.

// labVM is what newLab configures, for tests that write the config again.
func labVM(vm *rig.ConfigVM) {
	vm.Features = []string{"hello"}
	vm.UserConfig.Password = password
	vm.FileInjections = append(vm.FileInjections, inventory.FileInjection{Source: blobSource, Destination: blobDest, Mode: "0600"})
}

// failedStep is the run's failed task_end; the test fails without one.
func failedStep(t *testing.T, r result) event {
	t.Helper()
	for _, e := range r.ends() {
		if e.Status == "failed" {
			return e
		}
	}
	t.Fatalf("no step failed:\n%s", r)
	return event{}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestFaultNFSServerDown: a share is added while the node's NFS server does
// not answer (the stand-in's switch: mount.nfs hangs as with a server that
// never replies). The mount step gives up within its bound with an error
// that says so; the fstab is as it was (content, mode and owner), nothing is
// mounted and no mount helper is left running. Once the server answers, a
// re-run mounts the share with exactly one line, and the fstab keeps its mode.
func TestFaultNFSServerDown(t *testing.T) {
	t.Parallel()
	l := newLab(t, nil)
	if res := l.create(t); res.code != 0 {
		t.Fatalf("first create: exit %d", res.code)
	}
	// A fstab only root reads: the failed run and the fix must keep it so.
	l.guest(t, "chmod 640 /etc/fstab")
	const fstabState = "stat -c '%a %U:%G' /etc/fstab; cat /etc/fstab"
	before := l.guest(t, fstabState)

	l.node(t, "mkdir -p /export/more && echo more > /export/more/probe && touch /export/.nfs-server-down")
	l.writeConfig(t, func(vm *rig.ConfigVM) {
		labVM(vm)
		vm.NFSShares = append(vm.NFSShares, inventory.NFSShare{HostPath: "/export/more", GuestPath: "/mnt/more", Server: l.rig.NodeIP()})
	})
	start := time.Now()
	res := l.create(t)
	took := time.Since(start)
	if res.code != 1 {
		t.Fatalf("create with the NFS server down: exit %d, want 1", res.code)
	}
	failed := failedStep(t, res)
	for _, want := range []string{"mount /mnt/more: no answer from the NFS server within 1m0s", "/etc/fstab restored"} {
		if failed.Kind != "nfs_mount" || !strings.Contains(failed.Error, want) {
			t.Errorf("failed step %q (%s): error %q does not say %q", failed.Task, failed.Kind, failed.Error, want)
		}
	}
	// The mount is bounded at 60 s; the stand-in alone would hang forever.
	if took > 4*time.Minute {
		t.Errorf("the run with the NFS server down took %s: the mount step did not end within its bound", took)
	}
	if after := l.guest(t, fstabState); after != before {
		t.Errorf("fstab changed by the failed run:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := l.guest(t, "findmnt -rn -o TARGET -M /mnt/more; pgrep -f 'sbin/[m]ount.nfs'; ls -l /etc/fstab.phoenix-*.bak | tail -n 1 | cut -c1-10; true"); got != "-rw-r-----\n" {
		t.Errorf("after the failed mount: want nothing mounted at /mnt/more, no mount helper running and a 0640 backup; got:\n%s", got)
	}
	if out := l.guest(t, "findmnt -rn -o TARGET -M /mnt/data"); out != "/mnt/data\n" {
		t.Errorf("the share that was mounted before is gone: findmnt says %q", out)
	}

	l.node(t, "rm /export/.nfs-server-down")
	if res := l.create(t); res.code != 0 {
		t.Fatalf("create once the NFS server answers: exit %d", res.code)
	}
	fstab := l.guest(t, fstabState)
	if !strings.HasPrefix(fstab, "640 root:root\n") || strings.Count(fstab, " /mnt/more ") != 1 || strings.Count(fstab, " /mnt/data ") != 1 ||
		!strings.Contains(fstab, " /mnt/more nfs defaults,auto,nofail,x-phoenix 0 0\n") {
		t.Errorf("fstab after the re-run, want mode 640 and one marked line per share:\n%s", fstab)
	}
	if out := l.guest(t, "cat /mnt/more/probe"); out != "more\n" {
		t.Errorf("the new share reads %q, want the node's file", out)
	}
}

// TestFaultDiskFullDuringInjection: the filesystem of an injected file's
// directory fills up while a new version is written, through the agent and
// over SSH (sudo). The step fails saying so, the destination is untouched
// (old content, mode and owner) and no temp file or directory is left next
// to it; with space again, a re-run converges.
func TestFaultDiskFullDuringInjection(t *testing.T) {
	for _, channel := range []string{"agent", "ssh"} {
		t.Run(channel, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, nil)
			ctx := context.Background()
			if channel == "ssh" {
				if err := l.rig.SetFault(ctx, vmid, "agent-off", "1"); err != nil {
					t.Fatal(err)
				}
			}
			const src, dir, dest = "/root/rig-files/app.bin", "/srv/full", "/srv/full/app.bin"
			old := []byte("version 1\n")
			if err := l.rig.NodePut(ctx, src, old, 0o600); err != nil {
				t.Fatal(err)
			}
			l.writeConfig(t, func(vm *rig.ConfigVM) {
				labVM(vm)
				vm.FileInjections = append(vm.FileInjections, inventory.FileInjection{Source: src, Destination: dest})
			})
			if res := l.create(t); res.code != 0 {
				t.Fatalf("first create: exit %d", res.code)
			}
			// The disk fills up: a 1 MiB filesystem over the destination's
			// directory, holding the file as it is.
			l.guest(t, "cp -p "+dest+" /tmp/app.bin && mount -t tmpfs -o size=1m,mode=755 tmpfs "+dir+" && cp -p /tmp/app.bin "+dest)
			const destState = "sha256sum < " + dest + "; stat -c '%a %U:%G' " + dest + "; ls -A " + dir
			want := sha256Hex(old) + "  -\n600 root:root\napp.bin\n"
			if got := l.guest(t, destState); got != want {
				t.Fatalf("the destination before the fault:\n%s\nwant:\n%s", got, want)
			}
			big := make([]byte, 4<<20)
			if _, err := rand.Read(big); err != nil {
				t.Fatal(err)
			}
			if err := l.rig.NodePut(ctx, src, big, 0o600); err != nil {
				t.Fatal(err)
			}

			res := l.create(t)
			if res.code != 1 {
				t.Fatalf("create into a full disk: exit %d, want 1", res.code)
			}
			failed := failedStep(t, res)
			if failed.Kind != "file_inject" || failed.Transport != channel || !strings.Contains(failed.Error, "write "+dest+": ") ||
				!strings.Contains(failed.Error, "No space left on device") {
				t.Errorf("failed step %q (%s over %s): %s\nwant the injection over %s, saying the disk is full", failed.Task, failed.Kind, failed.Transport, failed.Error, channel)
			}
			if got := l.guest(t, destState); got != want {
				t.Errorf("after the failed injection:\n%s\nwant the old file alone:\n%s", got, want)
			}

			// Space again (the tmpfs gone, the old file under it): a re-run converges.
			l.guest(t, "umount "+dir)
			if res := l.create(t); res.code != 0 {
				t.Fatalf("create with space again: exit %d", res.code)
			}
			if got, want := l.guest(t, destState), fmt.Sprintf("%s  -\n600 root:root\napp.bin\n", sha256Hex(big)); got != want {
				t.Errorf("after the re-run:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
