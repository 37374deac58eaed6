package guest

import (
	"context"
	"io"
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
	backup    = "cp -p /etc/fstab /etc/fstab.phoenix-20261126T100000.000Z.bak && ls -1 /etc/fstab.phoenix-*.bak | head -n -5 | xargs -r rm -f --"
	mountData = "timeout 60 mount /mnt/data"
	findData  = "findmnt -n -M /mnt/data"
	undoMount = "if findmnt -n -M /mnt/data >/dev/null; then timeout 60 umount /mnt/data; fi"
	fstabStat = "stat -L -c '%a %u:%g' /etc/fstab && cat /etc/fstab"
	// rootTab is the stat line of the usual fstab, before its content.
	rootTab = "644 0:0\n"
)

var (
	nfsParams = map[string]any{"export": "/export/8101", "path": "/mnt/data", "options": ""}

	dpkgMissing   = exit(1, "dpkg\n", "dpkg-query: no packages found matching nfs-common\n")
	dpkgInstalled = exit(0, "dpkg\ninstall ok installed", "")
	mountedData   = exit(0, "/mnt/data 10.0.0.2:/export/8101 nfs rw,relatime\n", "")
	noFstab       = exit(1, "", "stat: cannot statx '/etc/fstab': No such file or directory\n")
	rootAttrs     = transport.Attrs{Mode: 0o644, Owner: "0:0"}
	no            = exit(1, "", "")
	yes           = exit(0, "", "")
)

func TestNFSMountProbes(t *testing.T) {
	w := newWorld(t)
	got := w.task("nfs_mount", nfsParams).(tasks.GuestProber).GuestProbes(w.env)
	want := []string{pkgProbe, fstabStat, findData, "test -d /mnt/data"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("probes\n got: %q\nwant: %q", got, want)
	}
}

func TestNFSMount(t *testing.T) {
	tests := []struct {
		name      string
		probes    [4]string // keys into answers: package, fstab, findmnt, test -d
		fstab     string    // /etc/fstab in the probe: its stat line, then its content
		action    tasks.Action
		calls     []fake.Call // after the probes
		wantTab   string      // /etc/fstab written; "" when untouched
		wantAttrs transport.Attrs
		wantErr   string
		wantDiff  string
	}{
		{
			name: "fresh guest", probes: [4]string{"dpkg-missing", "fstab", "no", "no"}, fstab: rootTab + rootLine,
			action: tasks.Create,
			calls: []fake.Call{
				{Line: lockRetry(aptUpd, 60, 5)}, {Line: lockRetry(aptInst, 60, 5)}, {Line: "mkdir -p /mnt/data"}, {Line: backup},
				{Line: mountData}, {Line: findData, Result: mountedData},
			},
			wantTab: rootLine + dataLine + "\n", wantAttrs: rootAttrs,
			wantDiff: "+" + dataLine,
		},
		{
			name: "converged", probes: [4]string{"dpkg-installed", "fstab", "mounted", "yes"}, fstab: rootTab + rootLine + dataLine + "\n",
			action: tasks.None,
		},
		{
			name: "line present, not mounted", probes: [4]string{"dpkg-installed", "fstab", "no", "yes"}, fstab: rootTab + rootLine + dataLine + "\n",
			action: tasks.Update,
			calls:  []fake.Call{{Line: mountData}, {Line: findData, Result: mountedData}},
		},
		{
			name: "line differs while mounted", probes: [4]string{"dpkg-installed", "fstab", "mounted", "yes"},
			fstab:  rootTab + rootLine + "10.0.0.9:/old /mnt/data nfs ro 0 0\n",
			action: tasks.Update,
			calls: []fake.Call{
				{Line: backup}, {Line: "timeout 60 umount /mnt/data"}, {Line: mountData}, {Line: findData, Result: mountedData},
			},
			wantTab: rootLine + dataLine + "\n", wantAttrs: rootAttrs,
			wantDiff: "-10.0.0.9:/old /mnt/data nfs ro 0 0\n+" + dataLine,
		},
		{
			name: "mounted NFS share without a line: remounted from the new line", probes: [4]string{"dpkg-installed", "fstab", "mounted", "yes"},
			fstab:  rootTab + rootLine,
			action: tasks.Update,
			calls: []fake.Call{
				{Line: backup}, {Line: "timeout 60 umount /mnt/data"}, {Line: mountData}, {Line: findData, Result: mountedData},
			},
			wantTab: rootLine + dataLine + "\n", wantAttrs: rootAttrs,
		},
		{
			name: "fstab mode and owner kept, content not shown", probes: [4]string{"dpkg-installed", "fstab", "no", "yes"},
			fstab:   "600 0:42\n" + rootLine,
			action:  tasks.Create,
			calls:   []fake.Call{{Line: backup}, {Line: mountData}, {Line: findData, Result: mountedData}},
			wantTab: rootLine + dataLine + "\n", wantAttrs: transport.Attrs{Mode: 0o600, Owner: "0:42"},
			wantDiff: "/etc/fstab (mode 0600, content not shown): sha256 " + sum(rootLine) + " → " + sum(rootLine+dataLine+"\n"),
		},
		{
			name: "no fstab yet: no backup", probes: [4]string{"dpkg-installed", "no-fstab", "no", "yes"},
			action:  tasks.Create,
			calls:   []fake.Call{{Line: mountData}, {Line: findData, Result: mountedData}},
			wantTab: dataLine + "\n", wantAttrs: transport.Attrs{Mode: 0o644},
		},
		{
			name: "dnf guest", probes: [4]string{"dnf-missing", "fstab", "no", "yes"}, fstab: rootTab + rootLine + dataLine + "\n",
			action: tasks.Update,
			calls: []fake.Call{
				{Line: lockRetry("dnf install -y nfs-utils", 60, 5)}, {Line: mountData}, {Line: findData, Result: mountedData},
			},
		},
		{
			name: "mount fails after fstab change: old fstab restored", probes: [4]string{"dpkg-installed", "fstab", "no", "yes"},
			fstab:  "640 0:0\n" + rootLine,
			action: tasks.Create,
			calls: []fake.Call{
				{Line: backup},
				{Line: mountData, Result: fake.Fail(32, "mount.nfs: access denied by server while mounting 10.0.0.2:/export/8101\n")},
				{Line: undoMount},
			},
			wantTab: rootLine, wantAttrs: transport.Attrs{Mode: 0o640, Owner: "0:0"},
			wantErr: `run "timeout 60 mount /mnt/data": exit 32: mount.nfs: access denied by server while mounting 10.0.0.2:/export/8101; /etc/fstab restored`,
		},
		{
			name: "mount fails without an fstab before: the new one removed", probes: [4]string{"dpkg-installed", "no-fstab", "no", "yes"},
			action: tasks.Create,
			calls: []fake.Call{
				{Line: mountData, Result: fake.Fail(32, "mount.nfs: access denied by server while mounting 10.0.0.2:/export/8101\n")},
				{Line: undoMount},
				{Line: "rm -f -- /etc/fstab"},
			},
			wantTab: dataLine + "\n", wantAttrs: transport.Attrs{Mode: 0o644}, // the fake's rm removes nothing: the command is the proof
			wantErr: "access denied by server while mounting 10.0.0.2:/export/8101; /etc/fstab removed (there was none)",
		},
		{
			name: "mount times out: says so, fstab restored", probes: [4]string{"dpkg-installed", "fstab", "no", "yes"},
			fstab:   rootTab + rootLine,
			action:  tasks.Create,
			calls:   []fake.Call{{Line: backup}, {Line: mountData, Result: fake.Fail(124, "")}, {Line: undoMount}},
			wantTab: rootLine, wantAttrs: rootAttrs,
			wantErr: `mount /mnt/data: no answer from the NFS server within 1m0s (is it reachable, and does it export /export/8101?): run "timeout 60 mount /mnt/data": exit 124; /etc/fstab restored`,
		},
		{
			name: "restore fails: both errors", probes: [4]string{"dpkg-installed", "no-fstab", "no", "yes"},
			action: tasks.Create,
			calls: []fake.Call{
				{Line: mountData, Result: fake.Fail(32, "mount.nfs: access denied\n")},
				{Line: undoMount, Result: fake.Fail(32, "umount: /mnt/data: target is busy.\n")},
				{Line: "rm -f -- /etc/fstab", Result: fake.Fail(1, "rm: cannot remove '/etc/fstab': Read-only file system\n")},
			},
			wantTab: dataLine + "\n", wantAttrs: transport.Attrs{Mode: 0o644},
			wantErr: `mount.nfs: access denied; unmount /mnt/data: run "` + undoMount + `": exit 32: umount: /mnt/data: target is busy.; ` +
				`restore /etc/fstab: run "rm -f -- /etc/fstab": exit 1: rm: cannot remove '/etc/fstab': Read-only file system`,
		},
		{
			name: "install fails", probes: [4]string{"dpkg-missing", "fstab", "no", "yes"}, fstab: rootTab + rootLine + dataLine + "\n",
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
				"fstab":       exit(0, tt.fstab, ""), "no-fstab": noFstab,
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
			case written && w.guest.Attrs["/etc/fstab"] != tt.wantAttrs:
				t.Errorf("/etc/fstab attrs %+v, want %+v", w.guest.Attrs["/etc/fstab"], tt.wantAttrs)
			}
		})
	}
}

// A mount point held by another filesystem is refused at Check, naming
// what holds it; nothing runs in the guest after the probes.
func TestNFSMountRefusesForeignMounts(t *testing.T) {
	tests := []struct {
		name           string
		path           string
		fstab, findmnt transport.Result
		wantErr        string
	}{
		{"root filesystem's line", "/", exit(0, rootTab+rootLine, ""), exit(0, "/ /dev/vda1 ext4 rw,relatime\n", ""),
			`/etc/fstab line 1 mounts UUID=1234-abcd (ext4) on /, which phoenix does not replace: only NFS lines and lines it wrote (option x-phoenix) are its own: "UUID=1234-abcd / ext4 errors=remount-ro 0 1"`},
		{"a disk's line, not mounted", "/srv", exit(0, rootTab+rootLine+"/dev/sdb1 /srv xfs defaults 0 2\n", ""), no,
			`/etc/fstab line 2 mounts /dev/sdb1 (xfs) on /srv, which phoenix does not replace`},
		{"mounted without a line", "/srv", exit(0, rootTab+rootLine, ""), exit(0, "/srv /dev/sdb1 xfs rw\n", ""),
			`/srv is already mounted (xfs) and /etc/fstab has no line for it: phoenix does not unmount a filesystem it did not mount`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			task := w.task("nfs_mount", map[string]any{"export": "/export/8101", "path": tt.path})
			w.probes(task, dpkgInstalled, tt.fstab, tt.findmnt, yes)
			_, err := task.Check(context.Background(), w.env)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error %v\nwant %s", err, tt.wantErr)
			}
		})
	}
}

// interrupted is a guest in which ctx is cancelled (Ctrl-C) while line
// runs, or during a Put; like the real transports, it then fails every call
// made with that ctx.
type interrupted struct {
	bounded
	line   string // cancel while this runs; "" cancels during the first Put
	cancel context.CancelFunc
}

func (g interrupted) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if err := ctx.Err(); err != nil {
		return transport.Result{}, err
	}
	res, err := g.bounded.Run(ctx, cmd)
	if cmd.Line == g.line {
		g.cancel()
		return res, ctx.Err()
	}
	return res, err
}

func (g interrupted) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := g.bounded.Put(ctx, path, r, a)
	if g.line == "" {
		g.cancel() // the write landed, its answer is lost
		return ctx.Err()
	}
	return err
}

// Ctrl-C during the mount, or while the new fstab is written: the restore
// still runs (it once used the cancelled context and failed, leaving the new
// line), and with no fstab before it removes the file instead of writing an
// empty one.
func TestNFSMountInterrupted(t *testing.T) {
	tests := []struct {
		name    string
		at      string // the line during which Ctrl-C comes; "" during the fstab write
		fstab   transport.Result
		calls   []fake.Call
		wantTab string // "" when it was removed
		wantErr string
	}{
		{"during the mount", mountData, exit(0, rootTab+rootLine, ""),
			[]fake.Call{{Line: backup}, {Line: mountData}, {Line: undoMount}},
			rootLine, "context canceled; /etc/fstab restored"},
		{"during the mount, no fstab before", mountData, noFstab,
			[]fake.Call{{Line: mountData}, {Line: undoMount}, {Line: "rm -f -- /etc/fstab"}},
			"", "context canceled; /etc/fstab removed (there was none)"},
		{"during the check after the mount", findData, exit(0, rootTab+rootLine, ""),
			[]fake.Call{{Line: backup}, {Line: mountData}, {Line: findData, Result: mountedData}, {Line: undoMount}},
			rootLine, "context canceled; /etc/fstab restored"},
		{"during the fstab write", "", exit(0, rootTab+rootLine, ""),
			[]fake.Call{{Line: backup}},
			rootLine, "write /etc/fstab: context canceled; /etc/fstab restored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			task := w.task("nfs_mount", nfsParams)
			w.probes(task, dpkgInstalled, tt.fstab, no, yes)
			c := w.check(task)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			g := interrupted{bounded: bounded{w.guest, t, &w.checking}, line: tt.at, cancel: cancel}
			w.env.Guest = func(context.Context) (tasks.Guest, error) { return g, nil }
			w.guest.Expect(tt.calls...)
			if tt.wantTab == "" {
				// What the fake's rm does.
				defer func() { delete(w.guest.Files, "/etc/fstab") }()
			}
			err := task.Apply(ctx, w.env, c)
			if err == nil || !strings.HasSuffix(err.Error(), tt.wantErr) {
				t.Fatalf("apply: %v, want an error ending %q", err, tt.wantErr)
			}
			if tt.wantTab != "" {
				if got := string(w.guest.Files["/etc/fstab"]); got != tt.wantTab || w.guest.Attrs["/etc/fstab"] != rootAttrs {
					t.Errorf("/etc/fstab %q %+v, want %q %+v", got, w.guest.Attrs["/etc/fstab"], tt.wantTab, rootAttrs)
				}
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
		fake.Call{Line: fstabStat, Result: exit(0, rootTab+rootLine, "")},
		fake.Call{Line: "findmnt -n -M /mnt/x", Result: no},
		fake.Call{Line: "test -d /mnt/x", Result: yes},
		fake.Call{Line: backup},
		fake.Call{Line: "timeout 60 mount /mnt/x"},
		fake.Call{Line: "findmnt -n -M /mnt/x", Result: exit(0, "/mnt/x nfs.lan:/srv/x nfs ro\n", "")},
	)
	if err := task.Apply(context.Background(), w.env, tasks.Change{Action: tasks.Unknown}); err != nil {
		t.Fatal(err)
	}
	if got, want := string(w.guest.Files["/etc/fstab"]), rootLine+"nfs.lan:/srv/x /mnt/x nfs ro,x-phoenix 0 0\n"; got != want {
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
