package pvesim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// The QEMU guest agent protocol: newline-delimited JSON over the VM's
// agent socket. Every exchange opens its own connection, like PVE's
// per-command QMP connection, because qemu-ga in unix-listen mode serves
// one client at a time and other qm calls must not wait behind a long poll.

// qgaError is an error reply of the guest agent.
type qgaError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qgaError) Error() string { return e.Desc }

type qgaReply struct {
	Return json.RawMessage `json:"return"`
	Error  *qgaError       `json:"error"`
}

// noReply are the commands qemu-ga does not answer when they succeed.
var noReply = map[string]bool{
	"guest-shutdown": true, "guest-suspend-disk": true, "guest-suspend-ram": true, "guest-suspend-hybrid": true,
}

// qgaSocket is the host end of the VM's agent channel.
func (s *Sim) qgaSocket(vmid int) string {
	return s.path("var/run/qemu-server", strconv.Itoa(vmid)+".qga")
}

// qga runs one agent command: connect, guest-sync-delimited (the agent may
// hold stale output of an earlier client), then the command. A guest-side
// error comes back as the reply's Error with a nil error; transport
// failures use PVE's QMP error texts.
func (c *call) qga(vmid int, cmd string, args any, timeout time.Duration) (*qgaReply, error) {
	failed := func(reason string) error {
		return errorf("VM %d qmp command '%s' failed - %s", vmid, cmd, reason)
	}
	deadline := time.Now().Add(timeout)
	if d, ok := c.ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(c.ctx, "unix", c.qgaSocket(vmid))
	if err != nil {
		return nil, failed(fmt.Sprintf("unable to connect to VM %d qga socket - %s", vmid, syscallText(err)))
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(c.ctx, func() { conn.Close() })
	defer stop()

	br := bufio.NewReader(conn)
	if err := c.qgaSync(conn, br); err != nil {
		return nil, qgaIOError(failed, err)
	}
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return nil, qgaIOError(failed, err)
	}
	if noReply[cmd] {
		return &qgaReply{}, nil
	}
	for {
		resp, err := br.ReadBytes('\n')
		if err != nil {
			return nil, qgaIOError(failed, err)
		}
		resp = bytes.TrimLeft(resp, "\xff \t\r\n")
		if len(resp) == 0 {
			continue
		}
		var r qgaReply
		if err := json.Unmarshal(resp, &r); err != nil {
			return nil, failed(fmt.Sprintf("got invalid reply %q", shorten(string(resp), 80)))
		}
		return &r, nil
	}
}

// qgaSync sends guest-sync-delimited with a random id and skips everything
// up to the 0xFF sentinel of the reply that echoes it.
func (c *call) qgaSync(conn net.Conn, br *bufio.Reader) error {
	var b [4]byte
	if _, err := io.ReadFull(c.Rand, b[:]); err != nil {
		return err
	}
	id := int64(binary.BigEndian.Uint32(b[:])&0x7fffffff) + 1
	req := fmt.Sprintf(`{"execute":"guest-sync-delimited","arguments":{"id":%d}}`+"\n", id)
	if _, err := conn.Write([]byte(req)); err != nil {
		return err
	}
	for {
		if _, err := br.ReadBytes(0xff); err != nil {
			return err
		}
		line, err := br.ReadBytes('\n')
		if err != nil {
			return err
		}
		var r struct {
			Return json.Number `json:"return"`
		}
		if json.Unmarshal(bytes.TrimSpace(line), &r) == nil && r.Return.String() == strconv.FormatInt(id, 10) {
			return nil
		}
	}
}

func qgaIOError(failed func(string) error, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return failed("got timeout")
	}
	return failed(syscallText(err))
}

// syscallText gives the strerror text Perl would print for err.
func syscallText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" && s[0] >= 'a' && s[0] <= 'z' {
			s = string(s[0]-'a'+'A') + s[1:]
		}
		return s
	}
	return err.Error()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// qgaDecode unmarshals a reply's return value.
func qgaDecode(r *qgaReply, v any) error {
	dec := json.NewDecoder(bytes.NewReader(r.Return))
	dec.UseNumber()
	return dec.Decode(v)
}
