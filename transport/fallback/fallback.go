// Package fallback picks the way into a guest: the QEMU guest agent when it
// answers, SSH when only SSH does, and it switches per step when the agent
// dies mid-run.
package fallback

import (
	"context"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// Options configures a Guest. (Contract stub: replaced by the implementation.)
type Options struct {
	VMID int
	// Agent is the agent transport of the VM (transport/agent).
	Agent transport.Transport
	// DialSSH opens an SSH connection to the guest; nil when SSH is not configured.
	DialSSH func(ctx context.Context) (transport.Transport, error)
	// Timeout bounds the wait for the first channel (the VM's agent timeout).
	Timeout time.Duration
	Log     func(format string, args ...any)
}

// Guest is a tasks.Guest that chooses its channel.
type Guest struct{ o Options }

// New returns a Guest; nothing is contacted until Wait or a first command.
func New(o Options) *Guest { return &Guest{o: o} }
