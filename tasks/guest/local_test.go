package guest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

// These tests run the tasks' real command lines with this machine's shell and
// tools (sha256sum, stat, findmnt, dpkg-query), node and guest alike, to prove
// the lines and their parsers agree with the real programs. They read and
// write only in temporary directories.

// localEnv is an Env whose node and guest are this machine.
func localEnv(t *testing.T) (*tasks.Env, deps) {
	w := newWorld(t)
	w.env.Node = local.Shell{}
	w.env.Guest = func(context.Context) (tasks.Guest, error) { return local.Shell{}, nil }
	return w.env, w.deps()
}

// prefetchLocal does what the runner does: all probes in one real batch.
func prefetchLocal(t *testing.T, env *tasks.Env, task tasks.Task) {
	t.Helper()
	lines := task.(tasks.GuestProber).GuestProbes(env)
	res, err := transport.Batch(context.Background(), local.Shell{}, lines)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		env.Store("guest-probe:"+l, res[i])
	}
}

func TestFileInjectLocal(t *testing.T) {
	ctx := context.Background()
	env, d := localEnv(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "node", "image.bin"), filepath.Join(dir, "guest", "opt", "app", "image.bin")
	content := make([]byte, 8<<20+123) // many MiB, binary
	rand.Read(content)
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	owner := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	task, err := newFileInject(d, map[string]any{"source": src, "destination": dst, "mode": "0640", "owner": owner})
	if err != nil {
		t.Fatal(err)
	}
	checkApply := func(task tasks.Task, want tasks.Action, diff string) {
		t.Helper()
		env.Forget("guest")
		prefetchLocal(t, env, task)
		c, err := task.Check(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		if c.Action != want || !strings.Contains(c.Diff, diff) {
			t.Fatalf("got %s %q diff %q, want %s diff %q", c.Action, c.Summary, c.Diff, want, diff)
		}
		if c.Pending() {
			if err := task.Apply(ctx, env, c); err != nil {
				t.Fatal(err)
			}
		}
	}

	checkApply(task, tasks.Create, "image.bin: content not shown (not world-readable): sha256 (none) → "+sum(string(content)))
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("guest file: %d bytes, err %v", len(got), err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	checkApply(task, tasks.None, "")

	if err := os.Chmod(dst, 0o600); err != nil {
		t.Fatal(err)
	}
	checkApply(task, tasks.Update, "mode 0600 → 0640")
	checkApply(task, tasks.None, "")

	// A small world-readable text file, no mode given: a unified diff, and
	// the mode follows the source's.
	bare, err := newFileInject(d, map[string]any{"source": src, "destination": dst})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o644); err != nil { // WriteFile keeps an existing file's mode
		t.Fatal(err)
	}
	checkApply(bare, tasks.Update, "@@ -1 +1,2 @@\n a\n+b\n")
	checkApply(bare, tasks.None, "")
	if err := os.Chmod(src, 0o600); err != nil {
		t.Fatal(err)
	}
	checkApply(bare, tasks.Update, "mode 0644 → 0600")
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the source's 0600", fi.Mode())
	}
	checkApply(bare, tasks.None, "")

	// A missing source names the node path.
	os.Remove(src)
	if _, err := task.Check(ctx, env); err == nil || !strings.Contains(err.Error(), "source "+src+" on node: ") || !strings.Contains(err.Error(), "No such file or directory") {
		t.Errorf("missing source: %v", err)
	}
}

func TestNFSMountProbesLocal(t *testing.T) {
	env, d := localEnv(t)
	mp := filepath.Join(t.TempDir(), "my data")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	task, err := newNFSMount(d, map[string]any{"export": "/export/8101", "path": mp})
	if err != nil {
		t.Fatal(err)
	}
	prefetchLocal(t, env, task)
	c, err := task.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	// Not mounted, no line for a fresh temp dir; the package may or may not be here.
	if c.Action != tasks.Create || !strings.Contains(c.Summary, "set its /etc/fstab line, mount it") ||
		!strings.Contains(c.Diff, "+10.0.0.2:/export/8101 "+strings.ReplaceAll(mp, " ", `\040`)+" nfs defaults,auto,nofail,x-phoenix 0 0") {
		t.Errorf("got %s %q\n%s", c.Action, c.Summary, c.Diff)
	}
	if p := c.Plan.(*nfsPlan); p.mkdir {
		t.Error("plans mkdir for an existing dir")
	}
}

// lockRetry with the real shell: a stand-in for apt-get that reports a held
// lock for its first `locked` calls, then exits with `code`.
func TestLockRetryLocal(t *testing.T) {
	for _, tc := range []struct {
		name         string
		locked, code int
		wantExit     int
		wantCalls    string
	}{
		{"lock released after two tries", 2, 0, 0, "3"},
		{"another failure is not retried", 0, 100, 100, "1"},
		{"lock held through every try", 9, 0, 100, "4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := filepath.Join(t.TempDir(), "calls")
			fakeApt := fmt.Sprintf(`n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n >%[1]s; `+
				`if [ $n -le %[2]d ]; then echo "E: Could not get lock /var/lib/apt/lists/lock" >&2; exit 100; fi; exit %[3]d`,
				transport.Quote(calls), tc.locked, tc.code)
			_, err := local.Shell{}.Run(context.Background(), transport.Cmd{Line: lockRetry(transport.Command("sh", "-c", fakeApt), 4, 0)})
			if got := transport.ExitCode(err); got != tc.wantExit {
				t.Errorf("exit %d (%v), want %d", got, err, tc.wantExit)
			}
			if n, _ := os.ReadFile(calls); strings.TrimSpace(string(n)) != tc.wantCalls {
				t.Errorf("called %s times, want %s", strings.TrimSpace(string(n)), tc.wantCalls)
			}
		})
	}
}
