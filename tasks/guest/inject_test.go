package guest

import (
	"bytes"
	"context"
	"errors"
	"io"
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
	injNode    = "sha256sum /root/phoenix/files/app.conf && stat -L -c %s /root/phoenix/files/app.conf"
	injProbe   = "stat -L -c '%s %a %u:%g %U:%G' /etc/app/app.conf && sha256sum /etc/app/app.conf"
	injMkdir   = "mkdir -p /etc/app"
	injVerify  = "sha256sum /etc/app/app.conf"
	newContent = "listen = 8080\nworkers = 4\n"
	oldContent = "listen = 80\nworkers = 4\n"
)

// appAttrs are injParams' mode and owner.
var appAttrs = transport.Attrs{Mode: 0o640, Owner: "app:app"}

var injParams = map[string]any{"source": injSrc, "destination": injDst, "mode": "0640", "owner": "app:app"}

func nodeSum(content string) fake.Call {
	return fake.Call{Line: injNode, Result: exit(0, sum(content)+"  "+injSrc+"\n"+strconv.Itoa(len(content))+"\n", "")}
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
	tests := []struct {
		name      string
		params    map[string]any
		node      string // content on the node
		guest     string // content in the guest
		missing   bool   // no file in the guest
		attrs     string // its mode and owner as the probe prints them
		action    tasks.Action
		apply     []fake.Call
		wantDiff  string
		wantFile  string
		wantAttrs transport.Attrs // what the new file was given before its rename
		wantErr   string
	}{
		{
			name: "equal", params: injParams, node: newContent,
			guest: newContent, attrs: "640 1001:1001 app:app",
			action: tasks.None,
		},
		{
			name: "equal, owner given by id", params: map[string]any{"source": injSrc, "destination": injDst, "owner": "1001"},
			node: newContent, guest: newContent, attrs: "640 1001:1001 app:app",
			action: tasks.None,
		},
		{
			name: "missing in the guest", params: injParams, node: newContent,
			missing: true,
			action:  tasks.Create,
			apply: []fake.Call{
				{Line: injMkdir},
				{Line: injVerify, Result: exit(0, sum(newContent)+"  "+injDst+"\n", "")},
			},
			wantDiff: "+listen = 8080", wantFile: newContent, wantAttrs: appAttrs,
		},
		{
			name: "content differs", params: injParams, node: newContent,
			guest: oldContent, attrs: "640 1001:1001 app:app",
			action: tasks.Update,
			apply: []fake.Call{
				{Line: injMkdir},
				{Line: injVerify, Result: exit(0, sum(newContent)+"  "+injDst+"\n", "")},
			},
			wantDiff: "-listen = 80\n+listen = 8080", wantFile: newContent, wantAttrs: appAttrs,
		},
		{
			name: "no mode or owner: no chown/chmod", params: map[string]any{"source": injSrc, "destination": injDst},
			node:  newContent,
			guest: oldContent, attrs: "600 0:0 root:root",
			action: tasks.Update,
			apply: []fake.Call{
				{Line: injMkdir},
				{Line: injVerify, Result: exit(0, sum(newContent)+"  "+injDst+"\n", "")},
			},
			wantDiff: "+listen = 8080", wantFile: newContent, wantAttrs: transport.Attrs{Mode: 0o644},
		},
		{
			name: "only mode and owner differ", params: injParams, node: newContent,
			guest: newContent, attrs: "644 0:0 root:root",
			action: tasks.Update,
			apply: []fake.Call{
				{Line: injMkdir},
				{Line: injVerify, Result: exit(0, sum(newContent)+"  "+injDst+"\n", "")},
			},
			wantDiff: "mode 0644 → 0640\nowner root:root → app:app",
			wantFile: newContent, wantAttrs: appAttrs,
		},
		{
			name: "binary", params: injParams, node: "\x00\x01\x02",
			guest: "\x00\x01", attrs: "640 1001:1001 app:app",
			action:   tasks.Update,
			apply:    []fake.Call{{Line: injMkdir}, {Line: injVerify, Result: exit(0, sum("\x00\x01\x02")+"  "+injDst+"\n", "")}},
			wantDiff: "binary/large file: sha256 " + sum("\x00\x01") + " → " + sum("\x00\x01\x02"),
			wantFile: "\x00\x01\x02", wantAttrs: appAttrs,
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
			w.node.Expect(nodeSum(tt.node))
			c := w.check(task)
			if c.Action != tt.action {
				t.Fatalf("action %s, want %s (%s)", c.Action, tt.action, c.Summary)
			}
			if !strings.Contains(c.Diff, tt.wantDiff) {
				t.Errorf("diff lacks %q:\n%s", tt.wantDiff, c.Diff)
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
	w.node.Expect(nodeSum(big))
	c := w.check(task)
	if want := "binary/large file: sha256 (none) → " + sum(big); c.Diff != want {
		t.Errorf("diff %q, want %q", c.Diff, want)
	}
	w.guest.Expect(fake.Call{Line: injMkdir}, fake.Call{Line: injVerify, Result: exit(0, sum(big)+"  "+injDst+"\n", "")})
	if err := w.apply(task, c); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.guest.Files[injDst], []byte(big)) {
		t.Errorf("guest got %d bytes, want %d", len(w.guest.Files[injDst]), len(big))
	}
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
	task := w.task("file_inject", map[string]any{"source": injSrc, "destination": injDst}).(*fileInject)
	err := task.copy(context.Background(), failingFiles{w.node}, w.guest, transport.Attrs{Mode: 0o644})
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
