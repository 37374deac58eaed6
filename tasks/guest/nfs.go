package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

const (
	fstabPath      = "/etc/fstab"
	fstabBackups   = 5 // backups kept
	mountTimeout   = 60 * time.Second
	installTimeout = 15 * time.Minute
	// restoreTimeout bounds putting /etc/fstab back after a failed or
	// interrupted mount: an unmount (mountTimeout) and a write.
	restoreTimeout = mountTimeout + time.Minute
)

// nfsClientProbe says which package manager the guest has ("dpkg", "dnf" or
// "none") on its first line, then whether the NFS client package is
// installed. It never looks for mount.nfs: the rig has a stand-in there.
var nfsClientProbe = `if command -v dpkg-query >/dev/null 2>&1; then echo dpkg; ` +
	transport.Command("dpkg-query", "-W", "-f=${Status}", "nfs-common") +
	`; elif command -v dnf >/dev/null 2>&1; then echo dnf; ` +
	transport.Command("rpm", "-q", "nfs-utils") +
	`; else echo none; fi`

var (
	// fstabProbe prints the fstab's mode and owner, then its content: a
	// rewrite keeps both.
	fstabProbe = transport.Command("stat", "-L", "-c", "%a %u:%g", fstabPath) + " && " + transport.Command("cat", fstabPath)
	rmFstab    = transport.Command("rm", "-f", "--", fstabPath)
	// dpkg may still be locked by cloud-init or unattended-upgrades on a
	// first boot; Apply wraps these in lockRetry for apt's other locks.
	aptUpdate   = transport.Command("apt-get", "-o", "DPkg::Lock::Timeout=300", "update")
	aptInstall  = "DEBIAN_FRONTEND=noninteractive " + transport.Command("apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "nfs-common")
	dnfInstall  = transport.Command("dnf", "install", "-y", "nfs-utils")
	pruneFstabs = `ls -1 /etc/fstab.phoenix-*.bak | head -n -` + fmt.Sprint(fstabBackups) + ` | xargs -r rm -f --`
)

// nfsMount is nfs_mount: the NFS client installed, the mount point created,
// exactly one /etc/fstab line for it, and the share mounted.
type nfsMount struct {
	d       deps
	Server  string `json:"server"`
	Export  string `json:"export"`
	Path    string `json:"path"`
	Options string `json:"options"`
}

func newNFSMount(d deps, params map[string]any) (tasks.Task, error) {
	t := &nfsMount{d: d}
	if err := tasks.Decode(params, t); err != nil {
		return nil, err
	}
	if t.Options == "" {
		t.Options = inventory.DefaultNFSOptions
	}
	if !path.IsAbs(t.Path) {
		return nil, fmt.Errorf("path %q: not an absolute path", t.Path)
	}
	if !path.IsAbs(t.Export) {
		return nil, fmt.Errorf("export %q: not an absolute path", t.Export)
	}
	t.Path = path.Clean(t.Path)
	return t, nil
}

// entry is the fstab line; the server defaults to the node's NFS address.
func (t *nfsMount) entry(env *tasks.Env) (Entry, error) {
	server := t.Server
	if server == "" {
		server = env.NFSServer
	}
	if server == "" {
		return Entry{}, errors.New("no NFS server: set server or the node's nfs_server")
	}
	return Entry{Source: server + ":" + t.Export, MountPoint: t.Path, FSType: "nfs", Options: t.Options}, nil
}

func (t *nfsMount) findmnt() string { return transport.Command("findmnt", "-n", "-M", t.Path) }
func (t *nfsMount) isDir() string   { return transport.Command("test", "-d", t.Path) }

func (t *nfsMount) GuestProbes(*tasks.Env) []string {
	return []string{nfsClientProbe, fstabProbe, t.findmnt(), t.isDir()}
}

// nfsPlan is what Apply does, in order.
type nfsPlan struct {
	install  []string // package commands; none when installed
	mkdir    bool
	old, new []byte // /etc/fstab; new is nil when it stays
	hadFstab bool
	attrs    transport.Attrs // the fstab's mode and owner, kept on a rewrite
	umount   bool            // mounted with a line that changes
	mount    bool
}

func (t *nfsMount) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	e, err := t.entry(env)
	if err != nil {
		return tasks.Change{}, err
	}
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		return notYet(fmt.Sprintf("will mount %s on %s", e.Source, t.Path), fmt.Sprintf("mounted %s on %s", e.Source, t.Path)), nil
	}
	return t.check(ctx, env)
}

func (t *nfsMount) check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	e, err := t.entry(env)
	if err != nil {
		return tasks.Change{}, err
	}
	var p nfsPlan
	if p.install, err = t.probeClient(ctx, env); err != nil {
		return tasks.Change{}, err
	}
	if p.old, p.hadFstab, p.attrs, err = probeFstab(ctx, env); err != nil {
		return tasks.Change{}, err
	}
	mounted, fstype, err := t.probeMount(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	dir, err := probeTest(ctx, env, t.isDir())
	if err != nil {
		return tasks.Change{}, err
	}
	p.mkdir = !dir
	newFstab, changed, err := EditFstab(p.old, e)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("%s %w", fstabPath, err)
	}
	if changed {
		p.new = newFstab
	}
	if mounted && !hasMountPoint(p.old, t.Path) && !isNFS(fstype) {
		// Mounting the share would unmount it first.
		return tasks.Change{}, fmt.Errorf("%s is already mounted (%s) and %s has no line for it: "+
			"phoenix does not unmount a filesystem it did not mount", t.Path, fstype, fstabPath)
	}
	p.umount = mounted && changed
	p.mount = !mounted || changed

	if len(p.install) == 0 && !p.mkdir && !changed && !p.mount {
		return tasks.Change{Action: tasks.None, Summary: fmt.Sprintf("%s mounted on %s", e.Source, t.Path)}, nil
	}
	c := tasks.Change{Action: tasks.Update, Plan: &p, Commands: t.commands(&p)}
	if !mounted && !hasMountPoint(p.old, t.Path) {
		c.Action = tasks.Create
	}
	var will, did []string
	if len(p.install) > 0 {
		will, did = append(will, "install the NFS client"), append(did, "installed the NFS client")
	}
	if changed {
		will, did = append(will, "set its /etc/fstab line"), append(did, "set its /etc/fstab line")
	}
	if p.mount {
		will, did = append(will, "mount it"), append(did, "mounted it")
	}
	c.Summary = fmt.Sprintf("%s on %s: will %s", e.Source, t.Path, strings.Join(will, ", "))
	c.Done = fmt.Sprintf("%s on %s: %s", e.Source, t.Path, strings.Join(did, ", "))
	if changed {
		c.Diff = fstabDiff(&p)
	}
	return c, nil
}

// fstabDiff shows the lines that change, unless the fstab is not
// world-readable (a CIFS line may hold a password): then its hashes.
func fstabDiff(p *nfsPlan) string {
	if p.hadFstab && p.attrs.Mode&0o004 == 0 {
		return fmt.Sprintf("%s (mode %s, content not shown): sha256 %s → %s",
			fstabPath, transport.OctalMode(p.attrs.Mode), sha256Hex(p.old), sha256Hex(p.new))
	}
	return unifiedDiff(fstabPath, p.old, p.new)
}

// probeClient returns the commands that install the NFS client, none when
// it is installed.
func (t *nfsMount) probeClient(ctx context.Context, env *tasks.Env) ([]string, error) {
	res, err := env.GuestProbe(ctx, nfsClientProbe)
	if err != nil {
		return nil, err
	}
	mgr, status, _ := strings.Cut(string(res.Stdout), "\n")
	switch mgr {
	case "dpkg":
		if res.ExitCode == 0 && strings.Contains(status, "install ok installed") {
			return nil, nil
		}
		return []string{aptUpdate, aptInstall}, nil
	case "dnf":
		if res.ExitCode == 0 {
			return nil, nil
		}
		return []string{dnfInstall}, nil
	case "none":
		return nil, errors.New("guest has neither dpkg nor dnf: install the NFS client in the image")
	}
	return nil, fmt.Errorf("probe NFS client: exit %d: unexpected output %q", res.ExitCode, transport.Tail(append(res.Stdout, res.Stderr...), 3))
}

// lockRetry runs line again while it fails because another package manager
// holds a lock, up to tries times, delay seconds apart; any other failure
// ends it at once. apt-get waits for the dpkg lock (DPkg::Lock::Timeout) but
// not for its lists and archives locks, which a first boot's apt-daily may
// hold, or an apt-get left running by an agent that died mid-step.
func lockRetry(line string, tries, delay int) string {
	return fmt.Sprintf(`e=$(mktemp) || exit 1; i=1; `+
		`until %s 2>"$e"; do c=$?; cat "$e" >&2; `+
		`if [ "$i" -ge %d ] || ! grep -q 'Could not get lock' "$e"; then rm -f "$e"; exit "$c"; fi; `+
		`i=$((i+1)); echo "phoenix: another package manager holds its lock; retrying in %ds" >&2; sleep %d; done; `+
		`cat "$e" >&2; rm -f "$e"`, line, tries, delay, delay)
}

func (t *nfsMount) commands(p *nfsPlan) []string {
	cmds := append([]string(nil), p.install...)
	if p.mkdir {
		cmds = append(cmds, transport.Command("mkdir", "-p", t.Path))
	}
	if p.new != nil {
		if p.hadFstab {
			cmds = append(cmds, "backup /etc/fstab to /etc/fstab.phoenix-<time>.bak")
		}
		cmds = append(cmds, "write /etc/fstab")
	}
	if p.umount {
		cmds = append(cmds, t.umountLine())
	}
	if p.mount {
		cmds = append(cmds, t.mountLine(), t.findmnt())
	}
	return cmds
}

func (t *nfsMount) mountLine() string {
	return transport.Command("timeout", fmt.Sprint(mountTimeout.Seconds()), "mount", t.Path)
}

func (t *nfsMount) umountLine() string {
	return transport.Command("timeout", fmt.Sprint(mountTimeout.Seconds()), "umount", t.Path)
}

func (t *nfsMount) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	p, g, err := planned[nfsPlan](ctx, env, c, t.check)
	if p == nil {
		return err
	}
	for _, line := range p.install {
		cmd := transport.Cmd{Line: lockRetry(line, 60, 5), Stdout: out(env), Stderr: out(env), Timeout: installTimeout}
		if _, err := g.Run(ctx, cmd); err != nil {
			return fmt.Errorf("install NFS client: %w", err)
		}
	}
	if p.mkdir {
		if _, err := run(ctx, g, transport.Command("mkdir", "-p", t.Path)); err != nil {
			return fmt.Errorf("create mount point: %w", err)
		}
	}
	if p.new == nil {
		_, err := t.mount(ctx, g, p)
		return err
	}
	if p.hadFstab {
		// cp -p: the backup keeps the fstab's mode and owner.
		bak := "/etc/fstab.phoenix-" + t.d.now().UTC().Format("20060102T150405.000Z") + ".bak"
		if _, err := run(ctx, g, transport.Command("cp", "-p", fstabPath, bak)+" && "+pruneFstabs); err != nil {
			return fmt.Errorf("backup /etc/fstab: %w", err)
		}
	}
	if err := g.Put(ctx, fstabPath, bytes.NewReader(p.new), p.attrs); err != nil {
		err = fmt.Errorf("write /etc/fstab: %w", err)
		if ctx.Err() == nil {
			return err // Put is atomic: the old fstab is in place
		}
		return t.restore(ctx, g, p, false, err) // interrupted: the write may have landed
	}
	if mountRan, err := t.mount(ctx, g, p); err != nil {
		// A line that does not mount may stop the next boot.
		return t.restore(ctx, g, p, mountRan, err)
	}
	return nil
}

// restore puts /etc/fstab back as it was before Apply (removes it when there
// was none) after a failed or interrupted mount, and unmounts the share when
// the mount ran, so a re-run starts from the old state. It runs also when
// ctx was cancelled (Ctrl-C), within restoreTimeout.
func (t *nfsMount) restore(ctx context.Context, g tasks.Guest, p *nfsPlan, mountRan bool, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
	defer cancel()
	var failed []string
	if mountRan {
		if _, err := g.Run(ctx, transport.Cmd{Line: t.undoMountLine(), Timeout: mountTimeout + 15*time.Second}); err != nil {
			failed = append(failed, fmt.Sprintf("unmount %s: %v", t.Path, err))
		}
	}
	done := fstabPath + " restored"
	var err error
	if p.hadFstab {
		err = g.Put(ctx, fstabPath, bytes.NewReader(p.old), p.attrs)
	} else {
		done = fstabPath + " removed (there was none)"
		_, err = run(ctx, g, rmFstab)
	}
	if err != nil {
		failed = append(failed, fmt.Sprintf("restore %s: %v", fstabPath, err))
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w; %s", cause, strings.Join(failed, "; "))
	}
	return fmt.Errorf("%w; %s", cause, done)
}

// mount (re)mounts the share from its fstab line and verifies it; mountRan
// says whether the mount command was started.
func (t *nfsMount) mount(ctx context.Context, g tasks.Guest, p *nfsPlan) (mountRan bool, err error) {
	if !p.mount {
		return false, nil
	}
	cmd := transport.Cmd{Timeout: mountTimeout + 15*time.Second}
	if p.umount {
		cmd.Line = t.umountLine()
		if _, err := g.Run(ctx, cmd); err != nil {
			return false, err
		}
	}
	cmd.Line = t.mountLine()
	if _, err := g.Run(ctx, cmd); err != nil {
		if transport.ExitCode(err) == 124 { // timeout(1)
			return true, fmt.Errorf("mount %s: no answer from the NFS server within %s (is it reachable, and does it export %s?): %w",
				t.Path, mountTimeout, t.Export, err)
		}
		return true, err
	}
	cmd.Line = t.findmnt()
	_, err = g.Run(ctx, cmd)
	return true, err
}

// undoMountLine unmounts the mount point if something is mounted there.
func (t *nfsMount) undoMountLine() string {
	return "if " + t.findmnt() + " >/dev/null; then " + t.umountLine() + "; fi"
}

// probeMount reports whether the mount point is mounted, and the type of
// what is mounted there.
func (t *nfsMount) probeMount(ctx context.Context, env *tasks.Env) (mounted bool, fstype string, err error) {
	line := t.findmnt()
	res, err := env.GuestProbe(ctx, line)
	if err != nil {
		return false, "", err
	}
	switch res.ExitCode {
	case 0:
		// TARGET SOURCE FSTYPE OPTIONS; findmnt escapes blanks in fields.
		if f := strings.Fields(string(res.Stdout)); len(f) >= 3 {
			fstype = f[2]
		}
		return true, fstype, nil
	case 1:
		return false, "", nil
	}
	return false, "", res.Err(line)
}

// probeFstab reads /etc/fstab, its mode and owner; a missing fstab is no
// error, and a new one is written 0644 root.
func probeFstab(ctx context.Context, env *tasks.Env) (b []byte, exists bool, a transport.Attrs, err error) {
	a = transport.Attrs{Mode: 0o644}
	out, exists, err := probeFile(ctx, env, fstabProbe)
	if err != nil || !exists {
		return nil, false, a, err
	}
	st, content, ok := bytes.Cut(out, []byte("\n"))
	var mode uint32
	_, serr := fmt.Sscanf(string(st), "%o %s", &mode, &a.Owner)
	if !ok || serr != nil || mode > 0o7777 {
		return nil, false, a, fmt.Errorf("stat %s: unexpected output %q", fstabPath, transport.Tail(st, 1))
	}
	a.Mode = transport.ModeFromOctal(mode)
	return content, true, a, nil
}

// hasMountPoint reports whether fstab has a line for mp.
func hasMountPoint(fstab []byte, mp string) bool {
	for _, l := range splitLines(fstab) {
		if f, ok := parseFstabLine(l); ok && sameMountPoint(f[1], mp) {
			return true
		}
	}
	return false
}

// probeFile reads a file with a `cat` probe; a missing file is no error.
func probeFile(ctx context.Context, env *tasks.Env, line string) (b []byte, exists bool, err error) {
	res, err := env.GuestProbe(ctx, line)
	if err != nil {
		return nil, false, err
	}
	switch {
	case res.ExitCode == 0:
		return res.Stdout, true, nil
	case bytes.Contains(res.Stderr, []byte("No such file")):
		return nil, false, nil
	}
	return nil, false, res.Err(line)
}

// probeTest runs a probe whose exit code is the answer: 0 yes, 1 no.
func probeTest(ctx context.Context, env *tasks.Env, line string) (bool, error) {
	res, err := env.GuestProbe(ctx, line)
	if err != nil {
		return false, err
	}
	switch res.ExitCode {
	case 0:
		return true, nil
	case 1:
		return false, nil
	}
	return false, res.Err(line)
}

// unifiedDiff is the diff a person reads for a file change.
func unifiedDiff(name string, a, b []byte) string {
	d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: diffLines(a), B: diffLines(b), FromFile: name, ToFile: name, Context: 3,
	})
	return d
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// diffLines splits b for difflib, marking a missing final newline as diff(1)
// does (difflib.SplitLines would add an empty last line).
func diffLines(b []byte) []string {
	var out []string
	for _, l := range splitLines(b) {
		s := string(l)
		if !strings.HasSuffix(s, "\n") {
			s += "\n\\ No newline at end of file\n"
		}
		out = append(out, s)
	}
	return out
}
