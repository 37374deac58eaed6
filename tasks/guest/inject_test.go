package guest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

const (
	injSrc     = "/root/phoenix/files/app.conf"
	injDst     = "/etc/app/app.conf"
	injNode    = "sha256sum /root/phoenix/files/app.conf && stat -L -c '%s %a' /root/phoenix/files/app.conf"
	injProbe   = "stat -L -c '%s %a %u:%g %U:%G' /etc/app/app.conf && sha256sum /etc/app/app.conf"
	injMkdir   = "mkdir -p /etc/app"
	injVerify  = "sha256sum /etc/app/app.conf"
	newContent = "listen = 8080\nworkers = 4\n"
	oldContent = "listen = 80\nworkers = 4\n"
)

// appAttrs are injParams' mode and owner.
var appAttrs = transport.Attrs{Mode: 0o640, Owner: "app:app"}

var (
	injParams = map[string]any{"source": injSrc, "destination": injDst, "mode": "0640", "owner": "app:app"}
	// pubParams make a world-readable file: its content may show in a diff.
	pubParams = map[string]any{"source": injSrc, "destination": injDst, "mode": "0644", "owner": "app:app"}
	pubAttrs  = transport.Attrs{Mode: 0o644, Owner: "app:app"}
	// bareParams give neither mode nor owner.
	bareParams = map[string]any{"source": injSrc, "destination": injDst}
	// secretParams inject a token, marked sensitive.
	secretParams = map[string]any{"source": injSrc, "destination": injDst, "mode": "0644", "sensitive": true}
)

// nodeSum answers the node read of a source with content and mode.
func nodeSum(content, mode string) fake.Call {
	return fake.Call{Line: injNode, Result: exit(0, sum(content)+"  "+injSrc+"\n"+strconv.Itoa(len(content))+" "+mode+"\n", "")}
}

func guestStat(content, attrs string) string {
	return strconv.Itoa(len(content)) + " " + attrs + "\n" + sum(content) + "  " + injDst + "\n"
}

func TestFileInjectProbes(t *testing.T) {
	w := newWorld(t)
	got := w.task("file_inject", injParams).(tasks.GuestProber).GuestProbes(w.env)
	if len(got) != 1 || got[0] != injProbe {
		t.Errorf("probes %q", got)
	}
}

func TestFileInject(t *testing.T) {
	verified := func(content string) []fake.Call {
		return []fake.Call{{Line: injMkdir}, {Line: injVerify, Result: exit(0, sum(content)+"  "+injDst+"\n", "")}}
	}
	const (
		oldToken = "token=4f1c2a-old-secret\n"
		newToken = "token=9d3e7b-new-secret\n"
	)
	tests := []struct {
		name        string
		params      map[string]any
		node        string // content on the node
		nodeMode    string // its mode on the node; "" is 644
		guest       string // content in the guest
		missing     bool   // no file in the guest
		attrs       string // its mode and owner as the probe prints them
		action      tasks.Action
		apply       []fake.Call
		wantSummary string
		wantDiff    string   // the diff holds this
		hidden      []string // and none of these
		wantFile    string
		wantAttrs   transport.Attrs // what the new file was given before its rename
		wantErr     string
	}{
		{
			name: "equal", params: injParams, node: newContent,
			guest: newContent, attrs: "640 1001:1001 app:app",
			action:      tasks.None,
			wantSummary: "/etc/app/app.conf matches the node's " + injSrc + " (sha256 " + sum(newContent)[:12] + ")",
		},
		{
			name: "equal, owner given by id, mode the source's", params: map[string]any{"source": injSrc, "destination": injDst, "owner": "1001"},
			node: newContent, nodeMode: "640", guest: newContent, attrs: "640 1001:1001 app:app",
			action: tasks.None,
		},
		{
			name: "missing in the guest", params: pubParams, node: newContent,
			missing: true,
			action:  tasks.Create, apply: verified(newContent),
			wantDiff: "+listen = 8080", wantFile: newContent, wantAttrs: pubAttrs,
		},
		{
			name: "content differs", params: pubParams, node: newContent,
			guest: oldContent, attrs: "644 1001:1001 app:app",
			action: tasks.Update, apply: verified(newContent),
			wantDiff: "-listen = 80\n+listen = 8080", wantFile: newContent, wantAttrs: pubAttrs,
		},
		{
			name: "no mode: the source's, no owner: root's", params: bareParams, node: newContent, nodeMode: "600",
			missing: true,
			action:  tasks.Create, apply: verified(newContent),
			wantSummary: "will copy " + injSrc + " from the node to " + injDst,
			wantDiff:    injDst + ": content not shown (not world-readable): sha256 (none) → " + sum(newContent),
			hidden:      []string{"listen"},
			wantFile:    newContent, wantAttrs: transport.Attrs{Mode: 0o600},
		},
		{
			name: "no mode, setuid bits kept", params: bareParams, node: "\x7fELF", nodeMode: "4755",
			missing: true,
			action:  tasks.Create, apply: verified("\x7fELF"),
			wantFile: "\x7fELF", wantAttrs: transport.Attrs{Mode: 0o755 | fs.ModeSetuid},
		},
		{
			name: "no mode, same content: a world-readable copy of a 0600 source is tightened", params: bareParams,
			node: newContent, nodeMode: "600", guest: newContent, attrs: "644 0:0 root:root",
			action: tasks.Update, apply: verified(newContent),
			wantSummary: "will set mode 0644 → 0600 on " + injDst,
			wantDiff:    "mode 0644 → 0600", wantFile: newContent, wantAttrs: transport.Attrs{Mode: 0o600},
		},
		{
			name: "only mode and owner differ", params: injParams, node: newContent,
			guest: newContent, attrs: "644 0:0 root:root",
			action: tasks.Update, apply: verified(newContent),
			wantDiff: "mode 0644 → 0640\nowner root:root → app:app",
			wantFile: newContent, wantAttrs: appAttrs,
		},
		{
			name: "binary", params: pubParams, node: "\x00\x01\x02",
			guest: "\x00\x01", attrs: "644 1001:1001 app:app",
			action: tasks.Update, apply: verified("\x00\x01\x02"),
			wantDiff: "binary/large file: sha256 " + sum("\x00\x01") + " → " + sum("\x00\x01\x02"),
			wantFile: "\x00\x01\x02", wantAttrs: pubAttrs,
		},
		{
			name: "a 0600 token: hashes, never the token", params: map[string]any{"source": injSrc, "destination": injDst, "mode": "0600"},
			node: newToken, nodeMode: "600", guest: oldToken, attrs: "600 0:0 root:root",
			action: tasks.Update, apply: verified(newToken),
			wantDiff: injDst + ": content not shown (not world-readable): sha256 " + sum(oldToken) + " → " + sum(newToken),
			hidden:   []string{"token", "secret"},
			wantFile: newToken, wantAttrs: transport.Attrs{Mode: 0o600},
		},
		{
			name: "world-readable file that becomes 0640: hashes", params: injParams, node: newContent,
			guest: oldContent, attrs: "644 1001:1001 app:app",
			action: tasks.Update, apply: verified(newContent),
			wantDiff: injDst + ": content not shown (not world-readable): sha256 " + sum(oldContent) + " → " + sum(newContent) + "\nmode 0644 → 0640",
			hidden:   []string{"listen"},
			wantFile: newContent, wantAttrs: appAttrs,
		},
		{
			name: "0640 file that becomes world-readable: hashes", params: pubParams, node: newContent,
			guest: oldContent, attrs: "640 1001:1001 app:app",
			action: tasks.Update, apply: verified(newContent),
			wantDiff: "content not shown (not world-readable)", hidden: []string{"listen"},
			wantFile: newContent, wantAttrs: pubAttrs,
		},
		{
			name: "source the node keeps 0600: hashes", params: pubParams, node: newContent, nodeMode: "600",
			guest: oldContent, attrs: "644 1001:1001 app:app",
			action: tasks.Update, apply: verified(newContent),
			wantDiff: "content not shown (not world-readable)", hidden: []string{"listen"},
			wantFile: newContent, wantAttrs: pubAttrs,
		},
		{
			name: "sensitive: no content, no hash, even world-readable", params: secretParams, node: newToken,
			guest: oldToken, attrs: "644 0:0 root:root",
			action: tasks.Update, apply: verified(newToken),
			wantSummary: "will replace " + injDst + " with the node's " + injSrc,
			wantDiff:    injDst + ": content not shown (sensitive)",
			hidden:      []string{"token", sum(oldToken)[:12], sum(newToken)[:12]},
			wantFile:    newToken, wantAttrs: transport.Attrs{Mode: 0o644},
		},
		{
			name: "sensitive and equal: no hash in the summary", params: secretParams, node: newToken,
			guest: newToken, attrs: "644 0:0 root:root",
			action:      tasks.None,
			wantSummary: injDst + " matches the node's " + injSrc,
		},
		{
			name: "verify fails", params: injParams, node: newContent,
			guest: oldContent, attrs: "640 1001:1001 app:app",
			action: tasks.Update,
			apply: []fake.Call{
				{Line: injMkdir},
				{Line: injVerify, Result: exit(0, sum(oldContent)+"  "+injDst+"\n", "")},
			},
			wantFile: newContent, wantAttrs: appAttrs,
			wantErr: "verify /etc/app/app.conf: sha256 " + sum(oldContent) + ", want " + sum(newContent) + " (the node's " + injSrc + ")",
		},
		{
			name: "verify of a sensitive file fails: no hashes", params: secretParams, node: newToken,
			guest: oldToken, attrs: "644 0:0 root:root",
			action: tasks.Update,
			apply: []fake.Call{
				{Line: injMkdir},
				{Line: injVerify, Result: exit(0, sum(oldToken)+"  "+injDst+"\n", "")},
			},
			wantFile: newToken, wantAttrs: transport.Attrs{Mode: 0o644},
			wantErr: "verify /etc/app/app.conf: its sha256 is not the node's " + injSrc,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.node.Files[injSrc] = []byte(tt.node)
			task := w.task("file_inject", tt.params)
			if tt.missing {
				w.probes(task, exit(1, "", "stat: cannot statx '/etc/app/app.conf': No such file or directory\n"))
			} else {
				w.probes(task, exit(0, guestStat(tt.guest, tt.attrs), ""))
				w.guest.Files[injDst] = []byte(tt.guest)
			}
			w.node.Expect(nodeSum(tt.node, cmp.Or(tt.nodeMode, "644")))
			c := w.check(task)
			if c.Action != tt.action {
				t.Fatalf("action %s, want %s (%s)", c.Action, tt.action, c.Summary)
			}
			if tt.wantSummary != "" && c.Summary != tt.wantSummary {
				t.Errorf("summary %q, want %q", c.Summary, tt.wantSummary)
			}
			if !strings.Contains(c.Diff, tt.wantDiff) {
				t.Errorf("diff lacks %q:\n%s", tt.wantDiff, c.Diff)
			}
			for _, h := range tt.hidden {
				if strings.Contains(c.Diff+c.Summary+strings.Join(c.Commands, "\n"), h) {
					t.Errorf("the change shows %q:\n%s\n%s", h, c.Summary, c.Diff)
				}
			}
			if c.Action == tasks.None {
				return
			}
			w.guest.Expect(tt.apply...)
			err := w.apply(task, c)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("apply: %v, want %q", err, tt.wantErr)
			}
			if tt.wantFile != "" {
				if got := string(w.guest.Files[injDst]); got != tt.wantFile || w.guest.Attrs[injDst] != tt.wantAttrs {
					t.Errorf("guest file %q %+v, want %q %+v", got, w.guest.Attrs[injDst], tt.wantFile, tt.wantAttrs)
				}
			}
		})
	}
}

func TestFileInjectMissingSource(t *testing.T) {
	w := newWorld(t)
	w.status = "" // fails even before the VM exists
	task := w.task("file_inject", injParams)
	w.node.Expect(fake.Call{Line: injNode, Result: fake.Fail(1, "sha256sum: /root/phoenix/files/app.conf: No such file or directory\n")})
	_, err := task.Check(context.Background(), w.env)
	want := "source /root/phoenix/files/app.conf on node: run \"" + injNode + "\": exit 1: sha256sum: /root/phoenix/files/app.conf: No such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("error %v\nwant %s", err, want)
	}
}

func TestFileInjectLarge(t *testing.T) {
	w := newWorld(t)
	big := strings.Repeat("0123456789abcdef", 1<<18) // 4 MiB of text: no diff, never fetched
	w.node.Files[injSrc] = []byte(big)
	task := w.task("file_inject", map[string]any{"source": injSrc, "destination": injDst})
	w.probes(task, exit(1, "", "stat: cannot statx '/etc/app/app.conf': No such file or directory\n"))
	w.node.Expect(nodeSum(big, "644"))
	c := w.check(task)
	if want := "binary/large file: sha256 (none) → " + sum(big); c.Diff != want {
		t.Errorf("diff %q, want %q", c.Diff, want)
	}
	w.guest.Expect(fake.Call{Line: injMkdir}, fake.Call{Line: injVerify, Result: exit(0, sum(big)+"  "+injDst+"\n", "")})
	rec := &putSizes{}
	guest := w.env.Guest
	w.env.Guest = func(ctx context.Context) (tasks.Guest, error) {
		g, err := guest(ctx)
		rec.Guest = g
		return rec, err
	}
	if err := w.apply(task, c); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.guest.Files[injDst], []byte(big)) {
		t.Errorf("guest got %d bytes, want %d", len(w.guest.Files[injDst]), len(big))
	}
	// The guest is told the size ahead, to pick its channel by it.
	if want := []int64{int64(len(big))}; !slices.Equal(rec.sizes, want) {
		t.Errorf("sizes told to Put %v, want %v", rec.sizes, want)
	}
}

// putSizes records the size each Put's reader announces.
type putSizes struct {
	tasks.Guest
	sizes []int64
}

func (p *putSizes) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	p.sizes = append(p.sizes, transport.SizeOf(r))
	return p.Guest.Put(ctx, path, r, a)
}

// failingFiles is a node whose Get breaks half way.
type failingFiles struct{ *fake.Transport }

func (f failingFiles) Get(_ context.Context, _ string, w io.Writer) error {
	w.Write([]byte("half"))
	return errors.New("sftp: connection lost")
}

// A broken read on the node fails the copy and names the node path.
func TestFileInjectCopyReadFails(t *testing.T) {
	w := newWorld(t)
	task := inner(w.task("file_inject", map[string]any{"source": injSrc, "destination": injDst})).(*fileInject)
	err := task.copy(context.Background(), failingFiles{w.node}, w.guest, &injectPlan{attrs: transport.Attrs{Mode: 0o644}})
	if err == nil || err.Error() != "read /root/phoenix/files/app.conf on node: sftp: connection lost" {
		t.Errorf("error %v", err)
	}
	if _, ok := w.guest.Files[injDst]; ok {
		t.Error("guest file written from a broken read")
	}
}

func TestFileInjectParams(t *testing.T) {
	reg := tasks.Registry{}
	newWorld(t).deps().register(reg)
	for _, p := range []map[string]any{
		{"source": "rel", "destination": "/x"},
		{"source": "/x", "destination": "rel"},
		{"source": "/x", "destination": "/dir/"},
		{"source": "/x", "destination": "/y", "mode": "0999"},
		{"source": "/x", "destination": "/y", "mode": "u+x"},
		{"source": "/x", "destination": "/y", "mode": "17777"},
	} {
		if _, err := reg["file_inject"](p); err == nil {
			t.Errorf("%v: no error", p)
		}
	}
}

// Apply of a change that is pending but carries no plan (not one Check
// made) is an error, never a panic; nothing runs in the guest.
func TestApplyWithoutPlan(t *testing.T) {
	w := newWorld(t)
	w.features["docker"] = dockerScript
	for kind, params := range map[string]map[string]any{
		"nfs_mount":     nfsParams,
		"file_inject":   {"source": "/srv/motd", "destination": "/etc/motd"},
		"feature":       {"name": "docker"},
		"guest_hostkey": {"state": "present"},
	} {
		err := w.task(kind, params).Apply(context.Background(), w.env, tasks.Change{Action: tasks.Update})
		if err == nil || !strings.Contains(err.Error(), "plan") {
			t.Errorf("%s: apply without a plan: %v", kind, err)
		}
	}
}
