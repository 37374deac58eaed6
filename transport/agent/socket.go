package agent

import (
	"context"
	"errors"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/qga"
)

// NewWithSocket is New whose commands and files go through the agent's
// socket on the node (transport/qga: one small Perl helper per round
// trip, no qm process), with qm guest as the fallback when the helper
// cannot run there. The at-most-once contract is the same: what may have
// reached the agent is a *transport.StatusUnknownError.
func NewWithSocket(node transport.Runner, pveNode string, vmid int) *Transport {
	t := New(node, pveNode, vmid)
	t.Socket = qga.New(node, vmid)
	return t
}

// socket states
const (
	socketUnknown int32 = iota
	socketWorks
	socketUnusable // the helper cannot run on this node: qm guest then
)

// sock is the socket transport while it may be used.
func (t *Transport) sock() *qga.Transport {
	if t.Socket == nil || t.socketState.Load() == socketUnusable {
		return nil
	}
	return t.Socket
}

// usable records what a socket operation said about the helper: false
// when it could not run (nothing reached the agent; use qm guest).
func (t *Transport) usable(err error) bool {
	var he *qga.HelperError
	if errors.As(err, &he) {
		t.socketState.Store(socketUnusable)
		return false
	}
	t.socketState.Store(socketWorks)
	return true
}

// probe finds out, once, whether the helper runs on the node, before an
// operation that cannot be repeated through qm once it started (Put
// consumes its reader).
func (t *Transport) probe(ctx context.Context) *qga.Transport {
	s := t.sock()
	if s == nil || t.socketState.Load() == socketWorks {
		return s
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := s.Ping(pctx); !t.usable(err) {
		return nil
	}
	return s
}
