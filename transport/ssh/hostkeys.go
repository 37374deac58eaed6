package ssh

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"

	"github.com/phoenix-hv/phoenix/transport"
)

// hostKeys checks the key a server offers during one Dial against the
// known_hosts file, following OpenSSH's rules for host names and aliases.
type hostKeys struct {
	file   string
	host   string // for the ssh-keyscan hint
	port   int
	alias  string
	name   string // the known_hosts name: alias, "host" or "[host]:port"
	lookup string // name as host:port, the form the knownhosts package wants
	policy HostKeyPolicy
	db     *knownhosts.HostKeyDB

	mu  sync.Mutex
	err error // the last refusal, so Dial can return it without handshake noise
}

func newHostKeys(o Options) (*hostKeys, error) {
	h := &hostKeys{file: o.KnownHosts, host: o.Host, port: o.Port, alias: o.HostKeyAlias, policy: o.Policy}
	h.lookup = net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
	if o.HostKeyAlias != "" {
		// OpenSSH stores an alias without a port; port 22 normalizes to that.
		h.lookup = net.JoinHostPort(o.HostKeyAlias, "22")
	}
	h.name = knownhosts.Normalize(h.lookup)
	var files []string
	if _, err := os.Stat(o.KnownHosts); err == nil {
		files = append(files, o.KnownHosts)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	db, err := knownhosts.NewDB(files...)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", o.KnownHosts, err)
	}
	h.db = db
	return h, nil
}

// algorithms are the host key algorithms of the keys known for the host, so
// the server is asked for the key type that is pinned; nil when none is.
func (h *hostKeys) algorithms() []string { return h.db.HostKeyAlgorithms(h.lookup) }

// callback is the ssh.HostKeyCallback of the Dial.
func (h *hostKeys) callback(_ string, remote net.Addr, key ssh.PublicKey) error {
	err := h.check(remote, key)
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
	return err
}

// refusal is the error the callback returned, if any.
func (h *hostKeys) refusal() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *hostKeys) check(remote net.Addr, key ssh.PublicKey) error {
	err := h.db.HostKeyCallback()(h.lookup, remote, key)
	switch {
	case err == nil:
		return nil
	case knownhosts.IsHostKeyChanged(err):
		return h.changed(err, key)
	case knownhosts.IsHostUnknown(err) && h.policy == AcceptNew:
		if err := appendKnownHost(h.file, h.name, key); err != nil {
			return fmt.Errorf("accept new host key of %s: %w", h.name, err)
		}
		return nil
	case knownhosts.IsHostUnknown(err):
		return h.unknown(key)
	default:
		return fmt.Errorf("host key of %s (%s): %w", h.name, describeKey(key), err)
	}
}

func (h *hostKeys) unknown(key ssh.PublicKey) error {
	fix := fmt.Sprintf("append this line to %s: %s", h.file, knownhosts.Line([]string{h.name}, key))
	if h.alias == "" {
		argv := []string{"ssh-keyscan"}
		if h.port != 22 {
			argv = append(argv, "-p", strconv.Itoa(h.port))
		}
		if t := keyscanType(key.Type()); t != "" {
			argv = append(argv, "-t", t)
		}
		argv = append(argv, h.host)
		fix = fmt.Sprintf("run `%s >> %s`", transport.Command(argv...), transport.Quote(h.file))
	}
	return fmt.Errorf("%w: %s offered %s, which is not in %s; check that fingerprint, then %s, or use --host-keys accept-new",
		transport.ErrHostKeyUnknown, h.name, describeKey(key), h.file, fix)
}

func (h *hostKeys) changed(err error, key ssh.PublicKey) error {
	var ke *xknownhosts.KeyError
	var pinned []string
	if errors.As(err, &ke) {
		for _, w := range ke.Want {
			pinned = append(pinned, fmt.Sprintf("%s:%d pins %s", w.Filename, w.Line, describeKey(w.Key)))
		}
	}
	return fmt.Errorf("%w: REMOTE HOST IDENTIFICATION HAS CHANGED for %s: it offered %s, but %s. "+
		"Someone could be intercepting the connection, or the host was reinstalled. "+
		"If you know why it changed, remove the old key with `%s` and connect again",
		transport.ErrHostKeyChanged, h.name, describeKey(key), strings.Join(pinned, "; "),
		transport.Command("ssh-keygen", "-R", h.name, "-f", h.file))
}

func describeKey(k ssh.PublicKey) string { return k.Type() + " " + ssh.FingerprintSHA256(k) }

// keyscanType is the ssh-keyscan -t name of a key type ("" when unsure).
func keyscanType(t string) string {
	switch {
	case t == ssh.KeyAlgoED25519:
		return "ed25519"
	case t == ssh.KeyAlgoRSA:
		return "rsa"
	case strings.HasPrefix(t, "ecdsa-sha2-"):
		return "ecdsa"
	}
	return ""
}

// appendKnownHost adds name's key to file (created 0600 in a 0700 directory),
// unless another Dial just did.
func appendKnownHost(file, name string, key ssh.PublicKey) error {
	line := knownhosts.Line([]string{name}, key)
	return withKnownHostsLock(file, func() error {
		old, err := os.ReadFile(file)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if hasLine(old, line) {
			return nil
		}
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		text := line + "\n"
		if len(old) > 0 && old[len(old)-1] != '\n' {
			text = "\n" + text
		}
		if _, err := f.WriteString(text); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}

func hasLine(content []byte, line string) bool {
	for l := range bytes.Lines(content) {
		if string(bytes.TrimSpace(l)) == line {
			return true
		}
	}
	return false
}

// GuestHostKeyAlias is the known_hosts name a guest's pinned key is stored
// under: by vmid, not address, so a VM recreated at the same address never
// inherits a stale key.
func GuestHostKeyAlias(vmid int) string { return fmt.Sprintf("phoenix-vm-%d", vmid) }

// PinHostKey makes key the only key of alias in the known_hosts file: every
// line naming alias is replaced. The file is rewritten atomically (temp file
// and rename), created 0600 in a 0700 directory when missing. alias is a
// known_hosts name: a HostKeyAlias such as "phoenix-vm-8101", a host, or
// "[host]:port".
func PinHostKey(file, alias string, key ssh.PublicKey) error {
	if err := checkAlias(alias); err != nil {
		return err
	}
	if err := rewriteKnownHosts(file, alias, key); err != nil {
		return fmt.Errorf("pin host key of %s in %s: %w", alias, file, err)
	}
	return nil
}

// ForgetHostKey removes every line naming alias (plain or hashed) from the
// known_hosts file, like `ssh-keygen -R`. A missing file or alias is no error.
func ForgetHostKey(file, alias string) error {
	if err := checkAlias(alias); err != nil {
		return err
	}
	if err := rewriteKnownHosts(file, alias, nil); err != nil {
		return fmt.Errorf("forget host key of %s in %s: %w", alias, file, err)
	}
	return nil
}

// ParseHostKey reads OpenSSH public keys, one a line (the content of
// /etc/ssh/ssh_host_*_key.pub files), and returns the one to pin: ed25519
// first, then ECDSA, then RSA, then any other.
func ParseHostKey(b []byte) (ssh.PublicKey, error) {
	var best ssh.PublicKey
	rank := func(k ssh.PublicKey) int {
		switch keyscanType(k.Type()) {
		case "ed25519":
			return 3
		case "ecdsa":
			return 2
		case "rsa":
			return 1
		}
		return 0
	}
	for rest := b; len(bytes.TrimSpace(rest)) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			break // no further key in rest
		}
		if best == nil || rank(k) > rank(best) {
			best = k
		}
		rest = r
	}
	if best == nil {
		return nil, errors.New("no public host key found")
	}
	return best, nil
}

func checkAlias(alias string) error {
	if alias == "" || strings.ContainsAny(alias, " \t\r\n,#") {
		return fmt.Errorf("known_hosts name %q: must be one word without commas", alias)
	}
	return nil
}

// rewriteKnownHosts drops the lines of name and, when key is set, adds one.
func rewriteKnownHosts(file, name string, key ssh.PublicKey) error {
	return withKnownHostsLock(file, func() error {
		old, err := os.ReadFile(file)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		var out bytes.Buffer
		removed := false
		for l := range bytes.Lines(old) {
			if namesHost(l, name) {
				removed = true
				continue
			}
			out.Write(l)
			if !bytes.HasSuffix(l, []byte("\n")) {
				out.WriteByte('\n')
			}
		}
		if key == nil && !removed {
			return nil
		}
		if key != nil {
			out.WriteString(knownhosts.Line([]string{name}, key) + "\n")
		}
		return writeFileAtomic(file, out.Bytes())
	})
}

// namesHost reports whether a known_hosts line is a plain key line for
// name. Marker lines (@cert-authority, @revoked) are never touched.
func namesHost(line []byte, name string) bool {
	fields := strings.Fields(string(line))
	if len(fields) < 3 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], "@") {
		return false
	}
	for _, pattern := range strings.Split(fields[0], ",") {
		if pattern == name || hashedHostIs(pattern, name) {
			return true
		}
	}
	return false
}

// hashedHostIs matches a HashKnownHosts entry "|1|salt|hmac-sha1".
func hashedHostIs(pattern, name string) bool {
	salt64, hash64, ok := strings.Cut(strings.TrimPrefix(pattern, "|1|"), "|")
	if !ok || !strings.HasPrefix(pattern, "|1|") {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(salt64)
	hash, err2 := base64.StdEncoding.DecodeString(hash64)
	if err1 != nil || err2 != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(name))
	return hmac.Equal(mac.Sum(nil), hash)
}

// writeFileAtomic replaces file with data (mode 0600) through a temp file in
// the same directory, so a reader sees the old or the new file, never half.
func writeFileAtomic(file string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".phoenix-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// withKnownHostsLock runs fn holding a lock on file's directory (created
// 0700), so parallel Dials and pins do not lose each other's lines.
func withKnownHostsLock(file string, fn func() error) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}
