package pve

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/go-crypt/crypt/algorithm/shacrypt"
)

// The VM password leaves this machine only as a crypt hash: qm stores a
// value that already is one as given (qm.md §4.6, §7.1), so the password is
// never on the node's command line (ps) nor in its config.

// reCrypted is how Proxmox recognises a crypt hash it stores unchanged.
var reCrypted = regexp.MustCompile(`^\$(?:[156]|2[ay])(\$.+){2}`)

// saltChars is the crypt(3) salt alphabet: 64 characters, so a random byte
// masked to 6 bits picks one without bias.
const saltChars = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// cryptPassword returns pw as a SHA-512 crypt hash with a 16-character salt
// from rand and the default 5000 rounds ($6$salt$hash, what mkpasswd and
// openssl passwd -6 write; Proxmox itself writes SHA-256 with 5000). A value
// that already is a crypt hash is returned as is.
func cryptPassword(pw string, rand io.Reader) (string, error) {
	if reCrypted.MatchString(pw) {
		return pw, nil
	}
	salt := make([]byte, shacrypt.SaltLengthMax)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	for i, b := range salt {
		salt[i] = saltChars[b&0x3f]
	}
	h, err := shacrypt.New(shacrypt.WithSHA512(), shacrypt.WithIterations(shacrypt.IterationsDefaultOmitted))
	if err != nil {
		return "", err
	}
	d, err := h.HashWithSalt(pw, salt)
	if err != nil {
		return "", err
	}
	return d.Encode(), nil
}

// passwordMatches reports whether the stored hash is pw's, by hashing pw
// with the stored salt and rounds. ok is false for a stored value phoenix
// cannot check (another scheme, such as yescrypt set by hand).
func passwordMatches(stored, pw string) (match, ok bool) {
	if reCrypted.MatchString(pw) {
		return stored == pw, true // configured as a hash: stored verbatim
	}
	if !strings.HasPrefix(stored, "$5$") && !strings.HasPrefix(stored, "$6$") {
		return false, false
	}
	d, err := shacrypt.Decode(stored)
	if err != nil {
		return false, false
	}
	return d.Match(pw), true
}

// parseDumpPassword returns the password hash of `qm cloudinit dump VMID
// user` (qm config only shows it masked), "" when none is set.
func parseDumpPassword(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "password: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
