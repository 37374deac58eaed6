package guest

import (
	"context"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

const (
	rootLine = "UUID=1234-abcd / ext4 errors=remount-ro 0 1\n"

	pkgProbe  = `if command -v dpkg-query >/dev/null 2>&1; then echo dpkg; dpkg-query -W '-f=${Status}' nfs-common; elif command -v dnf >/dev/null 2>&1; then echo dnf; rpm -q nfs-utils; else echo none; fi`
	aptUpd    = "apt-get -o DPkg::Lock::Timeout=300 update"
	aptInst   = "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y nfs-common"
	backup    = "cp /etc/fstab /etc/fstab.phoenix-20261126T100000.000Z.bak && ls -1 /etc/fstab.phoenix-*.bak | head -n -5 | xargs -r rm -f --"
	mountData = "timeout 60 mount /mnt/data"
	findData  = "findmnt -n -M /mnt/data"
)

var (
	nfsParams = map[string]any{"export": "/export/8101", "path": "/mnt/data", "options": ""}

	dpkgMissing   = exit(1, "dpkg\n", "dpkg-query: no packages found matching nfs-common\n")
	dpkgInstalled = exit(0, "dpkg\ninstall ok installed", "")
	mountedData   = exit(0, "/mnt/data 10.0.0.2:/export/8101 nfs rw,relatime\n", "")
	no            = exit(1, "", "")
	yes           = exit(0, "", "")
)

func TestNFSMountProbes(t *testing.T) {
	w := newWorld(t)
	got := w.task("nfs_mount", nfsParams).(tasks.GuestProber).GuestProbes(w.env)
	want := []string{pkgProbe, "cat /etc/fstab", findData, "test -d /mnt/data"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("probes\n got: %q\nwant: %q", got, want)
	}
}

func TestNFSMount(t *testing.T) {
	tests := []struct {
		name     string
		probes   [4]string // keys into answers: package, fstab, findmnt, test -d
		fstab    string    // content of /etc/fstab in the probe
		action   tasks.Action
		calls    []fake.Call // after the probes
		wantTab  string      // /etc/fstab written; "" when untouched
		wantErr  string
		wantDiff string
	}{
		{
			name: "fresh guest", probes: [4]string{"dpkg-missing", "fstab", "no", "no"}, fstab: rootLine,
			action: tasks.Create,
			calls: []fake.Call{
				{Line: lockRetry(aptUpd, 60, 5)}, {Line: lockRetry(aptInst, 60, 5)}, {Line: "mkdir -p /mnt/data"}, {Line: backup},
				{Line: mountData}, {Line: findData, Result: mountedData},
			},
			wantTab:  rootLine + dataLine + "\n",
			wantDiff: "+" + dataLine,
		},
		{
			name: "converged", probes: [4]string{"dpkg-installed", "fstab", "mounted", "yes"}, fstab: rootLine + dataLine + "\n",
			action: tasks.None,
		},
		{
			name: "line present, not mounted", probes: [4]string{"dpkg-installed", "fstab", "no", "yes"}, fstab: rootLine + dataLine + "\n",
			action: tasks.Update,
			calls:  []fake.Call{{Line: mountData}, {Line: findData, Result: mountedData}},
		},
		{
			name: "line differs while mounted", probes: [4]string{"dpkg-installed", "fstab", "mounted", "yes"},
			fstab:  rootLine + "10.0.0.9:/old /mnt/data nfs ro 0 0\n",
			action: tasks.Update,
			calls: []fake.Call{
				{Line: backup}, {Line: "timeout 60 umount /mnt/data"}, {Line: mountData}, {Line: findData, Result: mountedData},
			},
			wantTab:  rootLine + dataLine + "\n",
			wantDiff: "-10.0.0.9:/old /mnt/data nfs ro 0 0\n+" + dataLine,
		},
		{
			name: "no fstab yet: no backup", probes: [4]string{"dpkg-installed", "no-fstab", "no", "yes"},
			action:  tasks.Create,
			calls:   []fake.Call{{Line: mountData}, {Line: findData, Result: mountedData}},
			wantTab: dataLine + "\n",
		},
		{
			name: "dnf guest", probes: [4]string{"dnf-missing", "fstab", "no", "yes"}, fstab: rootLine + dataLine + "\n",
			action: tasks.Update,
			calls: []fake.Call{
				{Line: lockRetry("dnf install -y nfs-utils", 60, 5)}, {Line: mountData}, {Line: findData, Result: mountedData},
			},
		},
		{
			name: "mount fails after fstab change: old fstab restored", probes: [4]string{"dpkg-installed", "fstab", "no", "yes"},
			fstab:  rootLine,
			action: tasks.Create,
			calls: []fake.Call{
				{Line: backup},
				{Line: mountData, Result: fake.Fail(32, "mount.nfs: access denied by server while mounting 10.0.0.2:/export/8101\n")},
			},
			wantTab: rootLine,
			wantErr: `run "timeout 60 mount /mnt/data": exit 32: mount.nfs: access denied by server while mounting 10.0.0.2:/export/8101; /etc/fstab restored`,
		},
		{
			name: "install fails", probes: [4]string{"dpkg-missing", "fstab", "no", "yes"}, fstab: rootLine + dataLine + "\n",
			action: tasks.Update,
			calls: []fake.Call{
				{Line: lockRetry(aptUpd, 60, 5), Result: fake.Fail(100, "E: Could not get lock /var/lib/apt/lists/lock\n")},
			},
			wantErr: "install NFS client: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			answers := map[string]transport.Result{
				"dpkg-missing": dpkgMissing, "dpkg-installed": dpkgInstalled,
				"dnf-missing": exit(1, "dnf\npackage nfs-utils is not installed\n", ""),
				"fstab":       exit(0, tt.fstab, ""), "no-fstab": exit(1, "", "cat: /etc/fstab: No such file or directory\n"),
				"mounted": mountedData, "no": no, "yes": yes,
			}
			task := w.task("nfs_mount", nfsParams)
			w.probes(task, answers[tt.probes[0]], answers[tt.probes[1]], answers[tt.probes[2]], answers[tt.probes[3]])
			c := w.check(task)
			if c.Action != tt.action {
				t.Fatalf("action %s, want %s (%s)", c.Action, tt.action, c.Summary)
			}
			if tt.wantDiff != "" && !strings.Contains(c.Diff, tt.wantDiff) {
				t.Errorf("diff lacks %q:\n%s", tt.wantDiff, c.Diff)
			}
			if tt.action == tasks.None {
				if want := "10.0.0.2:/export/8101 mounted on /mnt/data"; c.Summary != want {
					t.Errorf("summary %q, want %q", c.Summary, want)
				}
				return
			}
			w.guest.Expect(tt.calls...)
			err := w.apply(task, c)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("apply: %v, want error %q", err, tt.wantErr)
			}
			got, written := w.guest.Files["/etc/fstab"]
			switch {
			case tt.wantTab == "" && written:
				t.Errorf("/etc/fstab written: %q", got)
			case tt.wantTab != "" && string(got) != tt.wantTab:
				t.Errorf("/etc/fstab\n got: %q\nwant: %q", got, tt.wantTab)
			case written && w.guest.Attrs["/etc/fstab"].Mode != 0o644:
				t.Errorf("/etc/fstab mode %o", w.guest.Attrs["/etc/fstab"].Mode)
			}
		})
	}
}

// A guest that cannot answer yet (dry run of a fresh create) is never asked.
func TestNFSMountVMNotRunning(t *testing.T) {
	for _, status := range []string{"", "stopped"} {
		w := newWorld(t)
		w.status = status
		c := w.check(w.task("nfs_mount", nfsParams))
		if c.Action != tasks.Unknown || c.Summary != "will mount 10.0.0.2:/export/8101 on /mnt/data" {
			t.Errorf("status %q: %s %q", status, c.Action, c.Summary)
		}
	}
}

// Apply of a plan made before the guest answered reads the guest first.
func TestNFSMountApplyUnknown(t *testing.T) {
	w := newWorld(t)
	task := w.task("nfs_mount", map[string]any{"server": "nfs.lan", "export": "/srv/x", "path": "/mnt/x/", "options": "ro"})
	w.guest.Expect(
		fake.Call{Line: pkgProbe, Result: dpkgInstalled},
		fake.Call{Line: "cat /etc/fstab", Result: exit(0, rootLine, "")},
		fake.Call{Line: "findmnt -n -M /mnt/x", Result: no},
		fake.Call{Line: "test -d /mnt/x", Result: yes},
		fake.Call{Line: "cp /etc/fstab /etc/fstab.phoenix-20261126T100000.000Z.bak && ls -1 /etc/fstab.phoenix-*.bak | head -n -5 | xargs -r rm -f --"},
		fake.Call{Line: "timeout 60 mount /mnt/x"},
		fake.Call{Line: "findmnt -n -M /mnt/x", Result: exit(0, "/mnt/x nfs.lan:/srv/x nfs ro\n", "")},
	)
	if err := task.Apply(context.Background(), w.env, tasks.Change{Action: tasks.Unknown}); err != nil {
		t.Fatal(err)
	}
	if got, want := string(w.guest.Files["/etc/fstab"]), rootLine+"nfs.lan:/srv/x /mnt/x nfs ro 0 0\n"; got != want {
		t.Errorf("/etc/fstab %q, want %q", got, want)
	}
}

func TestNFSMountParams(t *testing.T) {
	reg := tasks.Registry{}
	newWorld(t).deps().register(reg)
	for _, p := range []map[string]any{
		{"export": "/export/1", "path": "mnt"},
		{"export": "export/1", "path": "/mnt"},
		{"export": "/export/1", "path": "/mnt", "bogus": 1},
	} {
		if _, err := reg["nfs_mount"](p); err == nil {
			t.Errorf("%v: no error", p)
		}
	}
	w := newWorld(t)
	w.env.NFSServer = ""
	if _, err := w.task("nfs_mount", nfsParams).Check(context.Background(), w.env); err == nil || !strings.Contains(err.Error(), "no NFS server") {
		t.Errorf("no server: %v", err)
	}
}

func TestUnifiedDiff(t *testing.T) {
	tests := []struct{ a, b, want string }{
		{rootLine, rootLine + dataLine + "\n",
			"--- /etc/fstab\n+++ /etc/fstab\n@@ -1 +1,2 @@\n " + rootLine + "+" + dataLine + "\n"},
		{"", dataLine + "\n", "--- /etc/fstab\n+++ /etc/fstab\n@@ -0,0 +1 @@\n+" + dataLine + "\n"},
		{"a", "a\n", "--- /etc/fstab\n+++ /etc/fstab\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"},
		{"same\n", "same\n", ""},
	}
	for _, tt := range tests {
		if got := unifiedDiff("/etc/fstab", []byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("unifiedDiff(%q, %q)\n got: %q\nwant: %q", tt.a, tt.b, got, tt.want)
		}
	}
}
