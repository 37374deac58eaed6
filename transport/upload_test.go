package transport_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

func sumOf(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// zeros is a fixed random source: uploads get predictable names.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// sh runs line on this machine with stdin.
func sh(t *testing.T, line, stdin string) (transport.Result, error) {
	t.Helper()
	return local.Shell{}.Run(context.Background(), transport.Cmd{Line: line, Stdin: strings.NewReader(stdin)})
}

// self is the current user as chown takes it: the one owner an unprivileged
// test may give a file.
func self(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Uid + ":" + u.Gid
}

// uploadWorld is a directory another user could own, a canary file outside
// it (what a planted symlink points at) and an upload into it.
type uploadWorld struct {
	dir, dest, canary string
	up                transport.Upload
}

const canaryContent = "root's secret\n"

func newUploadWorld(t *testing.T) uploadWorld {
	t.Helper()
	w := uploadWorld{dir: t.TempDir(), canary: filepath.Join(t.TempDir(), "canary")}
	w.dest = filepath.Join(w.dir, "app's.conf")
	if err := os.WriteFile(w.canary, []byte(canaryContent), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.up, err = transport.NewUpload(w.dest, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

// plant puts a symlink to the canary at name in the directory.
func (w uploadWorld) plant(t *testing.T, name string) {
	t.Helper()
	if err := os.Symlink(w.canary, filepath.Join(w.dir, name)); err != nil {
		t.Fatal(err)
	}
}

// assert checks the canary is untouched, the destination holds want as a
// regular file with mode (want "": not written at all), and nothing but
// names is left in the directory.
func (w uploadWorld) assert(t *testing.T, want string, mode fs.FileMode, names ...string) {
	t.Helper()
	if b, err := os.ReadFile(w.canary); err != nil || string(b) != canaryContent {
		t.Errorf("canary holds %q (%v): written through a symlink", b, err)
	}
	if fi, _ := os.Stat(w.canary); fi.Mode().Perm() != 0o600 {
		t.Errorf("canary mode %o: changed through a symlink", fi.Mode().Perm())
	}
	fi, err := os.Lstat(w.dest)
	switch {
	case want == "" && (os.IsNotExist(err) || err == nil && fi.Mode()&fs.ModeSymlink != 0):
	case want == "":
		t.Errorf("destination: %v %v, want none or the planted symlink as it was", fi.Mode(), err)
	case err != nil || !fi.Mode().IsRegular():
		t.Errorf("destination: %v %v, want a regular file", fi, err)
	default:
		if b, _ := os.ReadFile(w.dest); string(b) != want {
			t.Errorf("destination holds %q, want %q", b, want)
		}
		if fi.Mode() != mode {
			t.Errorf("destination mode %v, want %v", fi.Mode(), mode)
		}
	}
	var got []string
	entries, _ := os.ReadDir(w.dir)
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("directory holds %q, want %q", got, names)
	}
}

func TestUploadOnceNeverFollowsPlantedSymlinks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		plant   []string // names that hold a symlink to the canary
		content string
		sum     string
		wantErr string
		want    string // destination content; "" for the symlink left alone
		left    []string
	}{
		{name: "symlink at the destination is replaced, its target untouched",
			plant: []string{"app's.conf"}, content: "new\n", sum: sumOf("new\n"), want: "new\n",
			left: []string{"app's.conf"}},
		{name: "symlink at the old fixed temp name is ignored",
			plant: []string{".app's.conf.phoenix-tmp"}, content: "new\n", sum: sumOf("new\n"), want: "new\n",
			left: []string{".app's.conf.phoenix-tmp", "app's.conf"}},
		{name: "sha256 mismatch: the destination stays, nothing is left",
			plant: []string{"app's.conf"}, content: "new\n", sum: sumOf("other\n"),
			wantErr: "sha256 of the data written for", left: []string{"app's.conf"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newUploadWorld(t)
			for _, n := range tc.plant {
				w.plant(t, n)
			}
			_, err := sh(t, w.up.Once(tc.sum, transport.Attrs{Mode: 0o640, Owner: self(t)}), tc.content)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			w.assert(t, tc.want, 0o640, tc.left...)
		})
	}
}

func TestUploadInStepsRefusesASwappedDirectory(t *testing.T) {
	w := newUploadWorld(t)
	res, err := sh(t, w.up.Begin(), "part one, ")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(res.Stdout))
	if _, err := sh(t, w.up.Append(id), "part two\n"); err != nil {
		t.Fatal(err)
	}
	// The directory's owner moves the private directory away and puts a
	// directory of its own, with a symlink where the file was, in its place.
	if err := os.Rename(w.up.Dir(), w.up.Dir()+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(w.up.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(w.canary, filepath.Join(w.up.Dir(), "f")); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{w.up.Append(id), w.up.Commit(id, sumOf("part one, part two\n"), transport.Attrs{Mode: 0o644}), w.up.Abort(id)} {
		if _, err := sh(t, line, "evil\n"); err == nil || !strings.Contains(err.Error(), "not the directory this upload made") {
			t.Errorf("%.40s…: err = %v, want a refusal", line, err)
		}
	}
	w.assert(t, "", 0, filepath.Base(w.up.Dir()), filepath.Base(w.up.Dir())+".moved")
}

func TestUploadInSteps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sum     string
		want    string
		wantErr bool
	}{
		{name: "commit: renamed over the planted symlink, directory removed", sum: sumOf("one two\n"), want: "one two\n"},
		{name: "sum differs: destination stays, directory removed", sum: sumOf("other\n"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newUploadWorld(t)
			w.plant(t, "app's.conf")
			res, err := sh(t, w.up.Begin(), "one ")
			if err != nil {
				t.Fatal(err)
			}
			id := strings.TrimSpace(string(res.Stdout))
			if _, err := sh(t, w.up.Append(id), "two\n"); err != nil {
				t.Fatal(err)
			}
			_, err = sh(t, w.up.Commit(id, tc.sum, transport.Attrs{Mode: transport.ModeFromOctal(0o2750)}), "")
			if (err != nil) != tc.wantErr {
				t.Fatalf("commit: %v, want error %v", err, tc.wantErr)
			}
			w.assert(t, tc.want, 0o750|fs.ModeSetgid, "app's.conf")
		})
	}
}

func TestUploadAbort(t *testing.T) {
	for _, id := range []func(begun string) string{
		func(begun string) string { return begun },
		func(string) string { return "" }, // Begin's output was lost
	} {
		w := newUploadWorld(t)
		res, err := sh(t, w.up.Begin(), "partial")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sh(t, w.up.Abort(id(strings.TrimSpace(string(res.Stdout)))), ""); err != nil {
			t.Fatal(err)
		}
		w.assert(t, "", 0)
	}
}

func TestUploadIntoMissingDirectory(t *testing.T) {
	up, err := transport.NewUpload(filepath.Join(t.TempDir(), "no", "f"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sh(t, up.Once(sumOf("x"), transport.Attrs{Mode: 0o644}), "x")
	if err = transport.MarkNotExist(err); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestUploadNames(t *testing.T) {
	up, _ := transport.NewUpload("/etc/my app/x.conf", zeros{})
	if up.Dir() != "/etc/my app/.phoenix-0000000000000000" {
		t.Errorf("Dir() = %q", up.Dir())
	}
	if got, _ := transport.TempName("/etc/motd", zeros{}); got != "/etc/.motd.phoenix-0000000000000000" {
		t.Errorf("TempName = %q", got)
	}
	a, _ := transport.NewUpload("/etc/motd", nil)
	b, _ := transport.NewUpload("/etc/motd", nil)
	if a.Dir() == b.Dir() {
		t.Errorf("two uploads share the directory %s", a.Dir())
	}
}

func TestOctalMode(t *testing.T) {
	for _, v := range []uint32{0o644, 0o600, 0o4755, 0o2750, 0o1777, 0o7777, 0} {
		m := transport.ModeFromOctal(v)
		if got := transport.OctalMode(m); got != fmt.Sprintf("%04o", v) {
			t.Errorf("OctalMode(ModeFromOctal(%04o)) = %s", v, got)
		}
	}
}
