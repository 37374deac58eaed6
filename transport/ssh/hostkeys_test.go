package ssh

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestPinAndForgetHostKey(t *testing.T) {
	old, pinned, other := newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey()
	line := func(name string, k ssh.PublicKey) string {
		return name + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	hashed := hashName(t, "phoenix-vm-8101")
	start := strings.Join([]string{
		"# comment kept",
		line("phoenix-vm-8101", old),
		line("other-host,phoenix-vm-8101", old),
		line(hashed, old),
		line("phoenix-vm-81011", other),
		"@cert-authority " + line("phoenix-vm-8101", other),
		line("other-host", other),
	}, "\n") // no final newline: the last line must survive intact

	for _, tc := range []struct {
		name   string
		start  *string
		forget bool
		want   []string
	}{
		{"pin replaces every line of the alias", &start, false, []string{
			"# comment kept",
			line("phoenix-vm-81011", other),
			"@cert-authority " + line("phoenix-vm-8101", other),
			line("other-host", other),
			line("phoenix-vm-8101", pinned),
		}},
		{"pin into a missing file", nil, false, []string{line("phoenix-vm-8101", pinned)}},
		{"forget", &start, true, []string{
			"# comment kept",
			line("phoenix-vm-81011", other),
			"@cert-authority " + line("phoenix-vm-8101", other),
			line("other-host", other),
		}},
		{"forget in a missing file", nil, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "phoenix")
			file := filepath.Join(dir, "guest_known_hosts")
			if tc.start != nil {
				os.MkdirAll(dir, 0o700)
				if err := os.WriteFile(file, []byte(*tc.start), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if tc.forget {
				err = ForgetHostKey(file, "phoenix-vm-8101")
			} else {
				err = PinHostKey(file, "phoenix-vm-8101", pinned)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(file)
			if tc.want == nil {
				if !os.IsNotExist(err) {
					t.Errorf("file created: %q %v", got, err)
				}
				return
			}
			if want := strings.Join(tc.want, "\n") + "\n"; string(got) != want {
				t.Errorf("file:\n%s\nwant:\n%s", got, want)
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want the file only", len(entries))
			}
		})
	}
}

func TestPinRejectsBadAlias(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	for _, alias := range []string{"", "a b", "a,b", "a\nb"} {
		if err := PinHostKey(file, alias, newSigner(t).PublicKey()); err == nil {
			t.Errorf("PinHostKey(%q) succeeded", alias)
		}
	}
}

func TestParseHostKey(t *testing.T) {
	ed := newSigner(t).PublicKey()
	ec := newECDSASigner(t).PublicKey()
	pub := func(k ssh.PublicKey) string { return string(ssh.MarshalAuthorizedKey(k)) }
	for _, tc := range []struct {
		name string
		in   string
		want ssh.PublicKey
	}{
		{"ed25519 preferred", pub(ec) + pub(ed), ed},
		{"comment and blank lines", "\n" + strings.TrimSpace(pub(ec)) + " root@guest\n\n", ec},
		{"garbage", "not a key\n", nil},
		{"empty", "", nil},
	} {
		got, err := ParseHostKey([]byte(tc.in))
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || string(got.Marshal()) != string(tc.want.Marshal()) {
			t.Errorf("%s: got %v, %v", tc.name, got, err)
		}
	}
}

// hashName is what `ssh-keygen -H` writes for name.
func hashName(t *testing.T, name string) string {
	salt := []byte("0123456789abcdefghij")
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(name))
	return "|1|" + base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
