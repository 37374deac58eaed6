// Package ssh is the SSH transport: one connection per host, reused for every
// command and SFTP transfer of a run.
package ssh

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// HostKeyPolicy says what to do with a host key not yet in known_hosts.
type HostKeyPolicy string

const (
	// Strict refuses unknown and changed keys (default).
	Strict HostKeyPolicy = "strict"
	// AcceptNew writes unknown keys to known_hosts and refuses changed ones.
	AcceptNew HostKeyPolicy = "accept-new"
)

// Options says how to reach one host.
type Options struct {
	Host          string
	Port          int // default 22
	User          string
	IdentityFiles []string // private keys; ssh-agent (SSH_AUTH_SOCK) is used too when set
	KnownHosts    string   // known_hosts file to check (and, with AcceptNew, to write); default ~/.ssh/known_hosts
	Policy        HostKeyPolicy
	// HostKeyAlias, when set, is the name looked up in KnownHosts instead of
	// host:port (guests are pinned as "phoenix-vm-<vmid>", so a VM recreated at
	// the same address does not inherit the old key).
	HostKeyAlias string
	// Jump, when set, is an open connection the TCP connection is made through.
	Jump           *Client
	ConnectTimeout time.Duration // default 15s
	KeepAlive      time.Duration // default 15s; 0 keeps the default, <0 disables
	MaxSessions    int           // concurrent sessions on this connection; default 10 (OpenSSH MaxSessions)
	// Grace is how long a cancelled command has between SIGTERM and SIGKILL
	// to end and clean up (qm clone removes its half-made VM); default 10s.
	Grace time.Duration
	// Transfer bounds each SFTP transfer by its size (zero: the default
	// 60 s + 4 s per MiB, no gap over 60 s, see transport.Pace).
	Transfer transport.Pace
}

// withDefaults fills the zero fields and rejects what cannot work.
func (o Options) withDefaults() (Options, error) {
	if o.Host == "" {
		return o, fmt.Errorf("no host")
	}
	if o.Port == 0 {
		o.Port = 22
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("port %d out of range", o.Port)
	}
	if o.User == "" {
		u, err := user.Current()
		if err != nil {
			return o, fmt.Errorf("no user given and the local one is unknown: %w", err)
		}
		o.User = u.Username
	}
	if o.KnownHosts == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return o, fmt.Errorf("no known_hosts file given: %w", err)
		}
		o.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	switch o.Policy {
	case "":
		o.Policy = Strict
	case Strict, AcceptNew:
	default:
		return o, fmt.Errorf("host key policy %q: want %q or %q", o.Policy, Strict, AcceptNew)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 15 * time.Second
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 10
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	return o, nil
}
