// Package agent is a guest transport through the QEMU guest agent, driven
// through the VM's agent socket on the Proxmox node (transport/qga) or with
// qm/pvesh there. Every operation is one command on the node (one SSH round
// trip), whatever it does in the guest.
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/qga"
)

// Transport runs commands and moves files in guest VMID through Node.
type Transport struct {
	Node    transport.Runner
	PVENode string
	VMID    int
	// DefaultTimeout bounds a guest command when neither Cmd.Timeout nor the
	// context gives a deadline: an agent command is never waited on forever.
	DefaultTimeout time.Duration
	// Rand names uploads' private directories; nil is crypto/rand (tests
	// set a fixed one).
	Rand io.Reader
	// Transfer bounds each command of a Put or Get by the bytes it moves
	// (zero: transport.Pace's defaults, 60 s + 4 s per MiB).
	Transfer transport.Pace

	// Socket, when set (NewWithSocket), reaches the agent through its
	// socket on the node, without qm; qm guest is used when the helper
	// cannot run there.
	Socket      *qga.Transport
	socketState atomic.Int32

	// turn lets one node command at a time talk to the agent: qemu-ga
	// serves one client at a time, and a second one is refused ("unable to
	// connect to VM … qga socket") or times out, which would read as an
	// agent that is gone.
	turnOnce sync.Once
	turn     chan struct{}
}

var _ transport.Transport = (*Transport)(nil)

// New returns the agent transport of vmid on node; pveNode is the node's
// Proxmox name, used in pvesh paths.
func New(node transport.Runner, pveNode string, vmid int) *Transport {
	return &Transport{Node: node, PVENode: pveNode, VMID: vmid, DefaultTimeout: time.Hour}
}

// Name says which channel this is.
func (t *Transport) Name() string { return "agent vm " + strconv.Itoa(t.VMID) }

// Close does nothing: the node connection belongs to the caller.
func (t *Transport) Close() error { return nil }

// pingTimeout bounds one ping: qm gives guest-ping 3 s, the rest is the
// round trip to the node.
const pingTimeout = 15 * time.Second

// Ping asks the agent whether it answers. It returns nil, an error wrapping
// transport.ErrAgentUnavailable with qm's own words (or the socket
// helper's), or another error when the node itself could not be asked.
func (t *Transport) Ping(ctx context.Context) error {
	if s := t.sock(); s != nil {
		if err := s.Ping(ctx); t.usable(err) {
			return err
		}
	}
	res, err := t.node(ctx, "qm guest cmd ping", transport.Cmd{
		Line:    transport.Command("qm", "guest", "cmd", strconv.Itoa(t.VMID), "ping"),
		Timeout: pingTimeout,
	})
	if err != nil {
		return err
	}
	// An error reply from the guest still exits 0 (qm does not check it).
	if out := bytes.TrimSpace(res.Stdout); bytes.Contains(out, []byte(`"error"`)) {
		return &UnavailableError{Text: "guest-ping: " + strings.Join(strings.Fields(string(out)), " ")}
	}
	return nil
}

// UnavailableError says the agent cannot be used right now. Text is what qm
// printed ("QEMU guest agent is not running"), kept verbatim so whoever falls
// back to SSH can say why.
type UnavailableError struct{ Text string }

func (e *UnavailableError) Error() string { return e.Text }
func (e *UnavailableError) Unwrap() error { return transport.ErrAgentUnavailable }

// unavailable matches qm's availability errors (reference §5.1, §9) and a
// failed QMP exchange with the agent ("… failed - got timeout", "… failed -
// unable to connect to VM 8101 qga socket …"). A guest-side "Agent error:
// …" is deliberately not here: the agent answered.
var unavailable = regexp.MustCompile(`No QEMU guest agent configured|VM \d+ (is )?not running|QEMU guest agent is not running|qmp command 'guest-[a-z-]+' failed - `)

// node runs one command on the node and turns a failure into an error that
// says what failed. A non-zero exit is never returned as *transport.ExitError:
// that type is reserved for the guest command's own exit status.
func (t *Transport) node(ctx context.Context, op string, c transport.Cmd) (transport.Result, error) {
	res, err := t.runNode(ctx, c)
	return res, classify(op, err)
}

// runNode runs c on the node when it is this transport's turn.
func (t *Transport) runNode(ctx context.Context, c transport.Cmd) (transport.Result, error) {
	t.turnOnce.Do(func() { t.turn = make(chan struct{}, 1) })
	select {
	case t.turn <- struct{}{}:
	case <-ctx.Done():
		return transport.Result{}, ctx.Err()
	}
	defer func() { <-t.turn }()
	return t.Node.Run(ctx, c)
}

// classify turns a failed node command into an error that says what failed.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ee *transport.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("%s: %w", op, err)
	}
	for _, l := range strings.Split(string(ee.Stderr), "\n") {
		if unavailable.MatchString(l) {
			return &UnavailableError{Text: strings.TrimSpace(l)}
		}
	}
	msg := fmt.Sprintf("%s: exit %d", op, ee.Code)
	if tail := transport.Tail(ee.Stderr, 5); tail != "" {
		msg += ": " + tail
	}
	if bytes.Contains(ee.Stderr, []byte("No such file or directory")) {
		return fmt.Errorf("%s: %w", msg, fs.ErrNotExist)
	}
	return errors.New(msg)
}

// latin1 recovers the guest's bytes from a string qm printed: qm JSON-encodes
// the raw bytes as if each were a Latin-1 character, so every rune is one
// byte (reference §1.5). A rune above U+00FF cannot come from qm; it is kept
// as UTF-8 rather than failing the command.
func latin1(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r <= 0xFF {
			b = append(b, byte(r))
		} else {
			b = append(b, string(r)...)
		}
	}
	return b
}
