package rig

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// writeKeyPair writes a throwaway ed25519 key to path (OpenSSH format, 0600)
// and its public half to path.pub, and returns the authorized_keys line.
func writeKeyPair(path, comment string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment
	if err := os.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		return "", err
	}
	return line, nil
}

// knownHostsLines turns the host's *.pub files (as read from the node over a
// trusted channel) into known_hosts lines for addr ("127.0.0.1:40022").
func knownHostsLines(addr string, pubFiles string) (string, error) {
	var b strings.Builder
	rest := []byte(pubFiles)
	for len(strings.TrimSpace(string(rest))) > 0 {
		key, _, _, next, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return "", fmt.Errorf("host key: %w", err)
		}
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n")
		rest = next
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("no host keys read for %s", addr)
	}
	return b.String(), nil
}
