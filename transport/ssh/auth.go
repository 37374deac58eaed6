package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keys are the signers one Dial offers: every usable identity file, then the
// ssh-agent's keys. skipped says why the others were left out, for the error
// when the server refuses all of them.
type keys struct {
	signers []ssh.Signer
	skipped []string
	agent   net.Conn // open during the handshake: agent signers sign through it
}

func loadKeys(ctx context.Context, files []string) (*keys, error) {
	k := &keys{}
	seen := map[string]bool{}
	add := func(s ssh.Signer) {
		id := string(s.PublicKey().Marshal())
		if !seen[id] {
			seen[id] = true
			k.signers = append(k.signers, s)
		}
	}
	for _, f := range files {
		s, err := readIdentity(f)
		if err != nil {
			k.skipped = append(k.skipped, err.Error())
			continue
		}
		add(s)
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		signers, err := k.openAgent(ctx, sock)
		if err != nil {
			k.skipped = append(k.skipped, fmt.Sprintf("ssh-agent %s: %v (is ssh-agent running? eval $(ssh-agent) && ssh-add)", sock, err))
		}
		for _, s := range signers {
			add(s)
		}
	}
	if len(k.signers) == 0 {
		k.close()
		why := k.skipped
		if len(files) == 0 && os.Getenv("SSH_AUTH_SOCK") == "" {
			why = append(why, "no identity file given and SSH_AUTH_SOCK is not set: set identity_file in the inventory, or start ssh-agent and ssh-add your key")
		}
		return nil, fmt.Errorf("no usable key: %s", strings.Join(why, "; "))
	}
	return k, nil
}

func (k *keys) openAgent(ctx context.Context, sock string) ([]ssh.Signer, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	// The agent protocol has no context: a deadline keeps a stuck agent from
	// outlasting the connect timeout (the connection is closed after Dial).
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		return nil, err
	}
	k.agent = conn
	return signers, nil
}

func readIdentity(file string) (ssh.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("identity file (identity_file in the inventory, or IdentityFile in ~/.ssh/config): %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, fmt.Errorf("identity %s: encrypted with a passphrase; load it into ssh-agent instead", file)
	case err != nil:
		return nil, fmt.Errorf("identity %s: %w", file, err)
	}
	return s, nil
}

func (k *keys) method() ssh.AuthMethod { return ssh.PublicKeys(k.signers...) }

// refused says what was offered and what was left out.
func (k *keys) refused() string {
	offered := make([]string, len(k.signers))
	for i, s := range k.signers {
		offered[i] = describeKey(s.PublicKey())
	}
	msg := "server refused " + strings.Join(offered, ", ")
	if len(k.skipped) > 0 {
		msg += "; not offered: " + strings.Join(k.skipped, "; ")
	}
	return msg
}

func (k *keys) close() {
	if k.agent != nil {
		k.agent.Close()
	}
}
