package guest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// maxDiff is the largest file shown as a text diff.
const maxDiff = 256 << 10

// errPutStopped ends the node read when the guest write gave up first.
var errPutStopped = errors.New("guest write stopped")

// fileInject is file_inject: a file from the Proxmox node copied into the
// guest, compared by sha256, mode (the source's unless given) and owner
// (when given). Its content shows in a diff only when everyone may read it
// anyway: never for a sensitive injection, else only for world-readable
// text on both sides; other diffs show hashes.
type fileInject struct {
	d           deps
	Source      string `json:"source"` // a path on the node
	Destination string `json:"destination"`
	Mode        string `json:"mode"`  // octal, "0644"; default: the source's
	Owner       string `json:"owner"` // user or user:group
	// Sensitive content (a token, a key) never shows, not even as a hash.
	Sensitive bool `json:"sensitive"`
	mode      uint64
}

func newFileInject(d deps, params map[string]any) (tasks.Task, error) {
	t := &fileInject{d: d}
	if err := tasks.Decode(params, t); err != nil {
		return nil, err
	}
	if !path.IsAbs(t.Source) {
		return nil, fmt.Errorf("source %q: not an absolute path on the node", t.Source)
	}
	if !path.IsAbs(t.Destination) || strings.HasSuffix(t.Destination, "/") {
		return nil, fmt.Errorf("destination %q: not an absolute file path", t.Destination)
	}
	if t.Mode != "" {
		m, err := strconv.ParseUint(t.Mode, 8, 32)
		if err != nil || m > 0o7777 {
			return nil, fmt.Errorf("mode %q: not an octal file mode", t.Mode)
		}
		t.mode = m
	}
	return t, nil
}

// guestStat reads size, mode and owner, then the hash, of the destination.
func (t *fileInject) guestStat() string {
	return transport.Command("stat", "-L", "-c", "%s %a %u:%g %U:%G", t.Destination) + " && " +
		transport.Command("sha256sum", t.Destination)
}

// nodeStat reads the hash, then the size and mode, of the source.
func (t *fileInject) nodeStat() string {
	return transport.Command("sha256sum", t.Source) + " && " + transport.Command("stat", "-L", "-c", "%s %a", t.Source)
}

func (t *fileInject) GuestProbes(*tasks.Env) []string { return []string{t.guestStat()} }

// fileFacts is what a side knows of its file.
type fileFacts struct {
	exists bool
	size   int64
	sha256 string
	mode   uint64
	ids    string // uid:gid
	names  string // user:group
}

type injectPlan struct {
	put   bool            // content differs
	attrs transport.Attrs // the destination's mode and owner
	sha   string
	size  int64 // the source's: the guest may take a faster channel for a large file
}

func (t *fileInject) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		if _, err := t.node(ctx, env); err != nil {
			return tasks.Change{}, err
		}
		return notYet(fmt.Sprintf("will copy %s from the node to %s", t.Source, t.Destination),
			fmt.Sprintf("copied %s from the node to %s", t.Source, t.Destination)), nil
	}
	return t.check(ctx, env)
}

func (t *fileInject) check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	src, err := t.node(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	dst, err := t.guest(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	mode := t.wantMode(src)
	p := injectPlan{sha: src.sha256, size: src.size, put: !dst.exists || dst.sha256 != src.sha256,
		attrs: transport.Attrs{Mode: transport.ModeFromOctal(uint32(mode)), Owner: t.Owner}}
	var diffs []string
	if dst.exists && dst.mode != mode {
		diffs = append(diffs, fmt.Sprintf("mode %04o → %04o", dst.mode, mode))
	}
	if t.Owner != "" && dst.exists && !ownerIs(dst, t.Owner) {
		diffs = append(diffs, fmt.Sprintf("owner %s → %s", dst.names, t.Owner))
	}
	if !p.put && len(diffs) == 0 {
		summary := fmt.Sprintf("%s matches the node's %s (sha256 %.12s)", t.Destination, t.Source, src.sha256)
		if t.Sensitive {
			summary = fmt.Sprintf("%s matches the node's %s", t.Destination, t.Source)
		}
		return tasks.Change{Action: tasks.None, Summary: summary}, nil
	}

	c := tasks.Change{Action: tasks.Update, Plan: &p, Commands: t.commands(&p)}
	switch {
	case !dst.exists:
		c.Action = tasks.Create
		c.Summary = fmt.Sprintf("will copy %s from the node to %s", t.Source, t.Destination)
		c.Done = fmt.Sprintf("copied %s from the node to %s", t.Source, t.Destination)
	case p.put:
		c.Summary = fmt.Sprintf("will replace %s with the node's %s", t.Destination, t.Source)
		c.Done = fmt.Sprintf("replaced %s with the node's %s", t.Destination, t.Source)
	default:
		c.Summary = fmt.Sprintf("will set %s on %s", strings.Join(diffs, ", "), t.Destination)
		c.Done = fmt.Sprintf("set %s on %s", strings.Join(diffs, ", "), t.Destination)
	}
	if p.put {
		d, err := t.contentDiff(ctx, env, src, dst, mode)
		if err != nil {
			return tasks.Change{}, err
		}
		diffs = append([]string{d}, diffs...)
	}
	c.Diff = strings.Join(diffs, "\n")
	return c, nil
}

// node reads the source's facts on the node; a missing source names its path.
func (t *fileInject) node(ctx context.Context, env *tasks.Env) (fileFacts, error) {
	res, err := probe(ctx, env.Node, t.nodeStat())
	if err != nil {
		return fileFacts{}, fmt.Errorf("source %s on node: %w", t.Source, err)
	}
	hash, st, _ := strings.Cut(string(res.Stdout), "\n")
	f := fileFacts{exists: true, sha256: sha256Field(hash)}
	var mode string
	_, serr := fmt.Sscanf(st, "%d %s", &f.size, &mode)
	f.mode, err = strconv.ParseUint(mode, 8, 32)
	if serr != nil || err != nil || f.mode > 0o7777 || f.sha256 == "" {
		return fileFacts{}, fmt.Errorf("source %s on node: unexpected output %q", t.Source, transport.Tail(res.Stdout, 2))
	}
	return f, nil
}

// wantMode is the destination's mode: the one given, else the source's, so
// a secret the node keeps 0600 is not written world-readable.
func (t *fileInject) wantMode(src fileFacts) uint64 {
	if t.Mode != "" {
		return t.mode
	}
	return src.mode
}

// guest reads the destination's facts from the probe.
func (t *fileInject) guest(ctx context.Context, env *tasks.Env) (fileFacts, error) {
	line := t.guestStat()
	res, err := env.GuestProbe(ctx, line)
	if err != nil {
		return fileFacts{}, err
	}
	if res.ExitCode != 0 {
		if bytes.Contains(res.Stderr, []byte("No such file")) {
			return fileFacts{}, nil
		}
		return fileFacts{}, fmt.Errorf("stat %s: %w", t.Destination, res.Err(line))
	}
	st, hash, _ := strings.Cut(string(res.Stdout), "\n")
	var f fileFacts
	var mode string
	_, serr := fmt.Sscanf(st, "%d %s %s %s", &f.size, &mode, &f.ids, &f.names)
	m, merr := strconv.ParseUint(mode, 8, 32)
	f.exists, f.mode, f.sha256 = true, m, sha256Field(hash)
	if serr != nil || merr != nil || f.sha256 == "" {
		return fileFacts{}, fmt.Errorf("stat %s: unexpected output %q", t.Destination, transport.Tail(res.Stdout, 2))
	}
	return f, nil
}

// sha256Field takes the hash from a sha256sum line; a leading backslash
// marks an escaped file name.
func sha256Field(line string) string {
	h, _, _ := strings.Cut(strings.TrimPrefix(line, `\`), " ")
	if len(h) != 64 {
		return ""
	}
	return h
}

// ownerIs compares "user" or "user:group", by name or by id.
func ownerIs(f fileFacts, owner string) bool {
	if !f.exists {
		return false
	}
	if strings.Contains(owner, ":") {
		return owner == f.names || owner == f.ids
	}
	user, _, _ := strings.Cut(f.names, ":")
	uid, _, _ := strings.Cut(f.ids, ":")
	return owner == user || owner == uid
}

// contentDiff is a unified diff for small text files everyone may read (the
// source, the destination and the file it becomes), else the hashes; for a
// sensitive file, neither.
func (t *fileInject) contentDiff(ctx context.Context, env *tasks.Env, src, dst fileFacts, mode uint64) (string, error) {
	if t.Sensitive {
		return t.Destination + ": content not shown (sensitive)", nil
	}
	before := cmp.Or(dst.sha256, "(none)")
	if !worldReadable(src.mode) || !worldReadable(mode) || dst.exists && !worldReadable(dst.mode) {
		return fmt.Sprintf("%s: content not shown (not world-readable): sha256 %s → %s", t.Destination, before, src.sha256), nil
	}
	hashes := fmt.Sprintf("binary/large file: sha256 %s → %s", before, src.sha256)
	if src.size > maxDiff || dst.size > maxDiff {
		return hashes, nil
	}
	var a, b bytes.Buffer
	if err := env.Node.Get(ctx, t.Source, &b); err != nil {
		return "", fmt.Errorf("read %s on node: %w", t.Source, err)
	}
	if dst.exists {
		g, err := env.Guest(ctx)
		if err != nil {
			return "", err
		}
		if err := g.Get(ctx, t.Destination, &a); err != nil {
			return "", fmt.Errorf("read %s: %w", t.Destination, err)
		}
	}
	if !isText(a.Bytes()) || !isText(b.Bytes()) {
		return hashes, nil
	}
	return unifiedDiff(t.Destination, a.Bytes(), b.Bytes()), nil
}

func isText(b []byte) bool { return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 }

func worldReadable(mode uint64) bool { return mode&0o004 != 0 }

func (t *fileInject) commands(p *injectPlan) []string {
	copy := fmt.Sprintf("copy node:%s to %s, mode %s", t.Source, t.Destination, transport.OctalMode(p.attrs.Mode))
	if t.Owner != "" {
		copy += ", owner " + t.Owner
	}
	return []string{transport.Command("mkdir", "-p", path.Dir(t.Destination)), copy, transport.Command("sha256sum", t.Destination)}
}

// Apply copies the file again also when only its mode or owner differ: a
// new file given them before it takes the destination's name is the one way
// to set them without following a symlink (chmod/chown on the destination
// path would follow one a guest user swapped in).
func (t *fileInject) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	p, g, err := planned[injectPlan](ctx, env, c, t.check)
	if p == nil {
		return err
	}
	if _, err := run(ctx, g, transport.Command("mkdir", "-p", path.Dir(t.Destination))); err != nil {
		return fmt.Errorf("create %s: %w", path.Dir(t.Destination), err)
	}
	if err := t.copy(ctx, env.Node, g, p); err != nil {
		return err
	}
	verify := transport.Command("sha256sum", t.Destination)
	res, err := run(ctx, g, verify)
	if err != nil {
		return fmt.Errorf("verify %s: %w", t.Destination, err)
	}
	if got := sha256Field(string(res.Stdout)); got != p.sha {
		if t.Sensitive {
			return fmt.Errorf("verify %s: its sha256 is not the node's %s", t.Destination, t.Source)
		}
		return fmt.Errorf("verify %s: sha256 %s, want %s (the node's %s)", t.Destination, cmp.Or(got, "unreadable"), p.sha, t.Source)
	}
	return nil
}

// copy streams the node's file into the guest without holding it in memory.
func (t *fileInject) copy(ctx context.Context, node transport.Files, g tasks.Guest, p *injectPlan) error {
	pr, pw := io.Pipe()
	got := make(chan error, 1)
	go func() {
		err := node.Get(ctx, t.Source, pw)
		pw.CloseWithError(err) // nil: EOF for the guest write
		got <- err
	}()
	putErr := g.Put(ctx, t.Destination, transport.Sized{Reader: pr, N: p.size}, p.attrs)
	pr.CloseWithError(errPutStopped) // unblocks a read the write gave up on
	getErr := <-got
	switch {
	case getErr != nil && !errors.Is(getErr, errPutStopped):
		return fmt.Errorf("read %s on node: %w", t.Source, getErr)
	case putErr != nil:
		return fmt.Errorf("write %s: %w", t.Destination, putErr)
	}
	return nil
}
