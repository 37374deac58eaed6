package transport_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

func TestCommitScript(t *testing.T) {
	sumOf := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	for _, tc := range []struct {
		name     string
		sum      string
		wantErr  bool
		wantDest string
	}{
		{name: "sum matches: renamed over the old file", sum: sumOf("new\n"), wantDest: "new\n"},
		{name: "sum differs: old file kept, temp removed", sum: sumOf("other\n"), wantErr: true, wantDest: "old\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dest, tmp := filepath.Join(dir, "it's a file"), filepath.Join(dir, ".tmp $(x)")
			os.WriteFile(dest, []byte("old\n"), 0o644)
			os.WriteFile(tmp, []byte("new\n"), 0o600)
			_, err := local.Shell{}.Run(context.Background(), transport.Cmd{Line: transport.CommitScript(tmp, dest, tc.sum, 0o640)})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if b, _ := os.ReadFile(dest); string(b) != tc.wantDest {
				t.Errorf("dest holds %q, want %q", b, tc.wantDest)
			}
			if _, err := os.Stat(tmp); !os.IsNotExist(err) {
				t.Errorf("temp file left behind (%v)", err)
			}
			if fi, _ := os.Stat(dest); !tc.wantErr && fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %o, want 640", fi.Mode().Perm())
			}
		})
	}
}

func TestCommitTemp(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/etc/motd", "/etc/.motd.phoenix-tmp"},
		{"/etc/my app/x.conf", "/etc/my app/.x.conf.phoenix-tmp"},
		{"rel", ".rel.phoenix-tmp"},
	} {
		if got := transport.CommitTemp(tc.in); got != tc.want {
			t.Errorf("CommitTemp(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
