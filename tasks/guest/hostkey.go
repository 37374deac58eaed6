package guest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/goccy/go-yaml"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	sshtransport "github.com/phoenix-hv/phoenix/transport/ssh"
)

const snippetDir = "/var/lib/vz/snippets"

// hostKey is guest_hostkey: the guest's SSH host key, made by phoenix on the
// node before the first boot and handed to cloud-init as vendor-data (the
// playbook sets cicustom vendor=local:snippets/phoenix-<vmid>-hostkey.yml),
// and pinned under the VM's alias. So the SSH fallback trusts the guest from
// its first answer, and a VM recreated at the same address never inherits a
// stale key: absent removes both.
type hostKey struct {
	d     deps
	State string `json:"state"` // present (default) or absent
}

func newHostKey(d deps, params map[string]any) (tasks.Task, error) {
	t := &hostKey{d: d}
	if err := tasks.Decode(params, t); err != nil {
		return nil, err
	}
	switch t.State {
	case "":
		t.State = "present"
	case "present", "absent":
	default:
		return nil, fmt.Errorf("state %q: want present or absent", t.State)
	}
	return t, nil
}

// snippetPath is where the node keeps the vendor-data of vmid.
func snippetPath(vmid int) string {
	return fmt.Sprintf("%s/phoenix-%d-hostkey.yml", snippetDir, vmid)
}

// hostKeySnippet is the cloud-config of the snippet (cc_ssh's ssh_keys).
type hostKeySnippet struct {
	SSHKeys struct {
		Private string `yaml:"ed25519_private"`
		Public  string `yaml:"ed25519_public"`
	} `yaml:"ssh_keys"`
}

type hostKeyPlan struct {
	generate bool          // write a new snippet (missing or unusable)
	pin      ssh.PublicKey // the snippet's key to pin, when only the pin is off
}

func (t *hostKey) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	if env.VM == nil {
		return tasks.Change{}, errors.New("guest_hostkey: no VM")
	}
	vmid, alias := env.VM.VMID, sshtransport.GuestHostKeyAlias(env.VM.VMID)
	if t.State == "absent" {
		return t.checkAbsent(ctx, env, vmid, alias)
	}
	if env.GuestKnownHosts == "" {
		return tasks.Change{}, errors.New("no known_hosts file for guest keys")
	}
	path := snippetPath(vmid)
	key, err := readSnippetKey(ctx, env.Node, path)
	if err != nil {
		return tasks.Change{}, err
	}
	if key == nil {
		return tasks.Change{
			Action:   tasks.Create,
			Summary:  fmt.Sprintf("will generate an ed25519 host key in %s and pin it as %s", path, alias),
			Done:     fmt.Sprintf("generated an ed25519 host key in %s and pinned it as %s", path, alias),
			Diff:     fmt.Sprintf("+ %s: new ed25519 host key (cloud-init vendor-data)\n+ %s: pin %s\n", path, env.GuestKnownHosts, alias),
			Commands: t.commands(env, path, alias, true),
			Plan:     &hostKeyPlan{generate: true},
		}, nil
	}
	fp := ssh.FingerprintSHA256(key)
	old, err := pinnedKeys(env.GuestKnownHosts, alias)
	if err != nil {
		return tasks.Change{}, err
	}
	if pinnedAs(old, key) {
		return tasks.Change{Action: tasks.None, Summary: fmt.Sprintf("host key %s in %s, pinned as %s", fp, path, alias)}, nil
	}
	var diff strings.Builder
	for _, k := range old {
		fmt.Fprintf(&diff, "- %s %s %s\n", alias, k.Type(), ssh.FingerprintSHA256(k))
	}
	fmt.Fprintf(&diff, "+ %s %s %s\n", alias, key.Type(), fp)
	return tasks.Change{
		Action:   tasks.Update,
		Summary:  fmt.Sprintf("will pin host key %s as %s", fp, alias),
		Done:     fmt.Sprintf("pinned host key %s as %s", fp, alias),
		Diff:     diff.String(),
		Commands: t.commands(env, path, alias, false),
		Plan:     &hostKeyPlan{pin: key},
	}, nil
}

func (t *hostKey) checkAbsent(ctx context.Context, env *tasks.Env, vmid int, alias string) (tasks.Change, error) {
	path := snippetPath(vmid)
	line := transport.Command("test", "-e", path)
	_, err := probe(ctx, env.Node, line)
	exists := err == nil
	if code := transport.ExitCode(err); code != 0 && code != 1 {
		return tasks.Change{}, fmt.Errorf("look for %s on node: %w", path, err)
	}
	var keys []ssh.PublicKey
	if env.GuestKnownHosts != "" {
		if keys, err = pinnedKeys(env.GuestKnownHosts, alias); err != nil {
			return tasks.Change{}, err
		}
	}
	if !exists && len(keys) == 0 {
		return tasks.Change{Action: tasks.None, Summary: fmt.Sprintf("no host key snippet or pin for %s", alias)}, nil
	}
	var diff strings.Builder
	if exists {
		fmt.Fprintf(&diff, "- %s\n", path)
	}
	for _, k := range keys {
		fmt.Fprintf(&diff, "- %s %s %s\n", alias, k.Type(), ssh.FingerprintSHA256(k))
	}
	return tasks.Change{
		Action:   tasks.Delete,
		Summary:  fmt.Sprintf("will remove the host key snippet and pin of %s", alias),
		Done:     fmt.Sprintf("removed the host key snippet and pin of %s", alias),
		Diff:     diff.String(),
		Commands: []string{transport.Command("rm", "-f", path), fmt.Sprintf("forget %s in %s", alias, env.GuestKnownHosts)},
	}, nil
}

func (t *hostKey) commands(env *tasks.Env, path, alias string, generate bool) []string {
	var cmds []string
	if generate {
		cmds = append(cmds, transport.Command("mkdir", "-p", snippetDir), "write "+path+" (mode 0600)")
	}
	return append(cmds, fmt.Sprintf("pin %s in %s", alias, env.GuestKnownHosts))
}

func (t *hostKey) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	vmid, alias := env.VM.VMID, sshtransport.GuestHostKeyAlias(env.VM.VMID)
	path := snippetPath(vmid)
	if t.State == "absent" {
		if _, err := run(ctx, env.Node, transport.Command("rm", "-f", path)); err != nil {
			return fmt.Errorf("remove %s on node: %w", path, err)
		}
		if env.GuestKnownHosts == "" {
			return nil
		}
		if err := t.d.forget(env.GuestKnownHosts, alias); err != nil {
			return fmt.Errorf("forget %s: %w", alias, err)
		}
		return nil
	}
	p, ok := c.Plan.(*hostKeyPlan)
	if !ok {
		return errors.New("change carries no host key plan")
	}
	key := p.pin
	if p.generate {
		snippet, pub, err := newHostKeySnippet(alias)
		if err != nil {
			return err
		}
		if _, err := run(ctx, env.Node, transport.Command("mkdir", "-p", snippetDir)); err != nil {
			return fmt.Errorf("create %s on node: %w", snippetDir, err)
		}
		if err := env.Node.Put(ctx, path, bytes.NewReader(snippet), transport.Attrs{Mode: 0o600}); err != nil {
			return fmt.Errorf("write %s on node: %w", path, err)
		}
		key = pub
	}
	if err := t.d.pin(env.GuestKnownHosts, alias, key); err != nil {
		return fmt.Errorf("pin %s: %w", alias, err)
	}
	return nil
}

// newHostKeySnippet makes an ed25519 key pair and its vendor-data.
func newHostKeySnippet(comment string) ([]byte, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("encode host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("encode host key: %w", err)
	}
	var s hostKeySnippet
	s.SSHKeys.Private = string(pem.EncodeToMemory(block))
	s.SSHKeys.Public = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment
	body, err := yaml.MarshalWithOptions(s, yaml.UseLiteralStyleIfMultiline(true))
	if err != nil {
		return nil, nil, fmt.Errorf("encode host key snippet: %w", err)
	}
	head := "#cloud-config\n# phoenix: SSH host key of " + comment + "; pinned on the phoenix host.\n"
	return append([]byte(head), body...), sshPub, nil
}

// readSnippetKey returns the public key of the snippet at path on the node,
// nil when the snippet is missing or unusable (then a new one is written).
func readSnippetKey(ctx context.Context, node transport.Runner, path string) (ssh.PublicKey, error) {
	line := "test ! -e " + transport.Quote(path) + " || " + transport.Command("cat", path)
	res, err := probe(ctx, node, line)
	if err != nil {
		return nil, fmt.Errorf("read %s on node: %w", path, err)
	}
	return parseHostKeySnippet(res.Stdout), nil
}

// parseHostKeySnippet returns the snippet's public key when its private key
// parses and matches it.
func parseHostKeySnippet(b []byte) ssh.PublicKey {
	var s hostKeySnippet
	if len(b) == 0 || yaml.Unmarshal(b, &s) != nil {
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.SSHKeys.Public))
	if err != nil || pub.Type() != ssh.KeyAlgoED25519 {
		return nil
	}
	priv, err := ssh.ParseRawPrivateKey([]byte(s.SSHKeys.Private))
	if err != nil {
		return nil
	}
	k, ok := priv.(*ed25519.PrivateKey)
	if !ok {
		return nil
	}
	derived, err := ssh.NewPublicKey(k.Public())
	if err != nil || !bytes.Equal(derived.Marshal(), pub.Marshal()) {
		return nil
	}
	return pub
}

// pinnedKeys lists the keys pinned for alias in the known_hosts file, the
// first of each type as ssh's host key check sees them; none when the file
// is missing.
func pinnedKeys(file, alias string) ([]ssh.PublicKey, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	check, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	// Checking a key nobody has makes the answer list what is pinned.
	nobody, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil, err
	}
	err = check(alias+":22", &net.TCPAddr{IP: net.IPv4zero, Port: 22}, nobody)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil, fmt.Errorf("check %s in %s: %w", alias, file, err)
	}
	keys := make([]ssh.PublicKey, 0, len(ke.Want))
	for _, w := range ke.Want {
		keys = append(keys, w.Key)
	}
	return keys, nil
}

// pinnedAs reports whether key is the pinned key of its type.
func pinnedAs(keys []ssh.PublicKey, key ssh.PublicKey) bool {
	for _, k := range keys {
		if k.Type() == key.Type() {
			return bytes.Equal(k.Marshal(), key.Marshal())
		}
	}
	return false
}
