// Package ssh is the SSH transport: one connection per host, reused for every
// command and SFTP transfer of a run.
package ssh

import "time"

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
	KnownHosts    string   // known_hosts file to check (and, with AcceptNew, to write)
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
}
