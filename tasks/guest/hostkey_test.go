package guest

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

const (
	snippet    = "/var/lib/vz/snippets/phoenix-8101-hostkey.yml"
	readSnip   = "test ! -e /var/lib/vz/snippets/phoenix-8101-hostkey.yml || cat /var/lib/vz/snippets/phoenix-8101-hostkey.yml"
	alias      = "phoenix-vm-8101"
	mkSnippets = "mkdir -p /var/lib/vz/snippets"
)

// pinFile writes a known_hosts file pinning keys under alias.
func pinFile(t *testing.T, file string, keys ...ssh.PublicKey) {
	t.Helper()
	var b strings.Builder
	b.WriteString("10.0.0.5 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey(t, 9)))) + "\n")
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{alias}, k) + "\n")
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func otherKey(t *testing.T, seed byte) ssh.PublicKey {
	t.Helper()
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)).Public())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// existing is a valid snippet and its public key.
func existing(t *testing.T) ([]byte, ssh.PublicKey) {
	t.Helper()
	b, pub, err := newHostKeySnippet(alias)
	if err != nil {
		t.Fatal(err)
	}
	return b, pub
}

func TestHostKeyFresh(t *testing.T) {
	w := newWorld(t)
	task := w.task("guest_hostkey", map[string]any{"state": "present"})
	w.node.Expect(fake.Call{Line: readSnip})
	c := w.check(task)
	if c.Action != tasks.Create {
		t.Fatalf("action %s (%s)", c.Action, c.Summary)
	}
	w.node.Expect(fake.Call{Line: mkSnippets})
	if err := w.apply(task, c); err != nil {
		t.Fatal(err)
	}

	written := w.node.Files[snippet]
	if w.node.Attrs[snippet].Mode != 0o600 {
		t.Errorf("snippet mode %o, want 600", w.node.Attrs[snippet].Mode)
	}
	if !bytes.HasPrefix(written, []byte("#cloud-config\n")) {
		t.Errorf("snippet does not start with #cloud-config:\n%s", written)
	}
	var doc struct {
		SSHKeys map[string]string `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal(written, &doc); err != nil {
		t.Fatalf("snippet is not YAML: %v\n%s", err, written)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(doc.SSHKeys["ed25519_public"]))
	if err != nil {
		t.Fatalf("ed25519_public: %v", err)
	}
	priv, err := ssh.ParseRawPrivateKey([]byte(doc.SSHKeys["ed25519_private"]))
	if err != nil {
		t.Fatalf("ed25519_private: %v", err)
	}
	derived, _ := ssh.NewPublicKey(priv.(*ed25519.PrivateKey).Public())
	if !bytes.Equal(derived.Marshal(), pub.Marshal()) {
		t.Error("private and public key of the snippet differ")
	}
	if got := w.pins[alias]; got == nil || !bytes.Equal(got.Marshal(), pub.Marshal()) {
		t.Errorf("pinned %v, want the snippet's key", got)
	}

	// The private key never reaches the Change.
	for _, s := range []string{fmt.Sprintf("%#v", c), fmt.Sprintf("%#v", c.Plan)} {
		if strings.Contains(s, "PRIVATE") || strings.Contains(s, doc.SSHKeys["ed25519_private"][40:80]) {
			t.Errorf("private key material in the change: %s", s)
		}
	}
}

func TestHostKeyPresent(t *testing.T) {
	body, pub := existing(t)
	tests := []struct {
		name    string
		snippet []byte
		pins    []ssh.PublicKey
		action  tasks.Action
		diff    string
		write   bool // a new snippet
	}{
		{name: "converged", snippet: body, pins: []ssh.PublicKey{pub}, action: tasks.None},
		{name: "not pinned", snippet: body, action: tasks.Update, diff: "+ phoenix-vm-8101 ssh-ed25519 " + ssh.FingerprintSHA256(pub) + "\n"},
		{name: "stale pin", snippet: body, pins: []ssh.PublicKey{otherKey(t, 1)}, action: tasks.Update,
			diff: "- phoenix-vm-8101 ssh-ed25519 " + ssh.FingerprintSHA256(otherKey(t, 1)) + "\n+ phoenix-vm-8101 ssh-ed25519 " + ssh.FingerprintSHA256(pub) + "\n"},
		{name: "snippet unusable", snippet: []byte("#cloud-config\nssh_keys: {ed25519_public: x}\n"), pins: []ssh.PublicKey{pub}, action: tasks.Create, write: true},
		{name: "snippet keys do not match", snippet: bytes.Replace(body, []byte(strings.Fields(string(ssh.MarshalAuthorizedKey(pub)))[1]), []byte(strings.Fields(string(ssh.MarshalAuthorizedKey(otherKey(t, 2))))[1]), 1),
			pins: []ssh.PublicKey{pub}, action: tasks.Create, write: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			if tt.pins != nil {
				pinFile(t, w.env.GuestKnownHosts, tt.pins...)
			}
			task := w.task("guest_hostkey", map[string]any{})
			w.node.Expect(fake.Call{Line: readSnip, Result: exit(0, string(tt.snippet), "")})
			c := w.check(task)
			if c.Action != tt.action || tt.diff != "" && c.Diff != tt.diff {
				t.Fatalf("got %s %q diff %q, want %s diff %q", c.Action, c.Summary, c.Diff, tt.action, tt.diff)
			}
			if c.Action == tasks.None {
				if want := "host key " + ssh.FingerprintSHA256(pub) + " in " + snippet + ", pinned as " + alias; c.Summary != want {
					t.Errorf("summary %q, want %q", c.Summary, want)
				}
				return
			}
			if tt.write {
				w.node.Expect(fake.Call{Line: mkSnippets})
			}
			if err := w.apply(task, c); err != nil {
				t.Fatal(err)
			}
			_, wrote := w.node.Files[snippet]
			if wrote != tt.write {
				t.Errorf("snippet written: %v, want %v", wrote, tt.write)
			}
			want := pub
			if tt.write {
				want = parseHostKeySnippet(w.node.Files[snippet])
			}
			if got := w.pins[alias]; got == nil || !bytes.Equal(got.Marshal(), want.Marshal()) {
				t.Errorf("pinned %v, want %v", got, want)
			}
		})
	}
}

func TestHostKeyAbsent(t *testing.T) {
	tests := []struct {
		name   string
		exists bool
		pinned bool
		action tasks.Action
	}{
		{name: "both there", exists: true, pinned: true, action: tasks.Delete},
		{name: "only the pin", pinned: true, action: tasks.Delete},
		{name: "only the snippet", exists: true, action: tasks.Delete},
		{name: "gone", action: tasks.None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			if tt.pinned {
				pinFile(t, w.env.GuestKnownHosts, otherKey(t, 3))
			}
			task := w.task("guest_hostkey", map[string]any{"state": "absent"})
			res := exit(1, "", "")
			if tt.exists {
				res = exit(0, "", "")
			}
			w.node.Expect(fake.Call{Line: "test -e " + snippet, Result: res})
			c := w.check(task)
			if c.Action != tt.action {
				t.Fatalf("action %s, want %s (%s)", c.Action, tt.action, c.Summary)
			}
			if c.Action == tasks.None {
				return
			}
			w.node.Expect(fake.Call{Line: "rm -f " + snippet})
			if err := w.apply(task, c); err != nil {
				t.Fatal(err)
			}
			if len(w.forgets) != 1 || w.forgets[0] != alias {
				t.Errorf("forgotten %q", w.forgets)
			}
		})
	}
}

func TestHostKeyParams(t *testing.T) {
	reg := tasks.Registry{}
	newWorld(t).deps().register(reg)
	if _, err := reg["guest_hostkey"](map[string]any{"state": "gone"}); err == nil {
		t.Error("state gone: no error")
	}
}
