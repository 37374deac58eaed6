package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phoenix-hv/phoenix/transport"
)

// Run runs cmd.Line in a new session of the connection. A command without
// Stdin reads an empty input. Stdin is copied until EOF or until the
// command ends, whichever comes first; a command may exit without reading
// it. On Cmd.Timeout or ctx cancellation the command gets SIGTERM (sshd
// sends it to the command's process group) and Options.Grace to end and
// clean up; then SIGKILL, and its session is closed. transport.Aborted(ctx)
// cuts the grace short.
func (c *Client) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	line := cmd.Printable()
	shown := transport.Shorten(line, 120) // long scripts stay readable in errors
	parent := ctx
	if cmd.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmd.Timeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return transport.Result{}, fmt.Errorf("run %q: not started: %w", shown, err)
	}
	release, err := c.acquire(ctx)
	if err != nil {
		return transport.Result{}, fmt.Errorf("run %q: %w", shown, err)
	}
	defer release()
	sess, err := c.conn.NewSession()
	if err != nil {
		return transport.Result{}, fmt.Errorf("run %q: open session: %w", shown, c.sessionErr(err))
	}
	defer sess.Close()

	stdout, stderr := &output{live: cmd.Stdout}, &output{live: cmd.Stderr}
	sess.Stdout, sess.Stderr = stdout, stderr
	var stdin io.WriteCloser
	if cmd.Stdin != nil {
		// Not sess.Stdin: Wait would then wait for the whole input and fail
		// when the command did not read it.
		if stdin, err = sess.StdinPipe(); err != nil {
			return transport.Result{}, fmt.Errorf("run %q: %w", shown, err)
		}
	}
	if err := sess.Start(cmd.Line); err != nil {
		return transport.Result{}, fmt.Errorf("run %q: start: %w", shown, c.connErr(err))
	}
	if stdin != nil {
		go func() {
			io.Copy(stdin, cmd.Stdin) // a write error means the command is gone
			stdin.Close()
		}()
	}
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()

	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		how := c.stop(sess, waited, transport.Aborted(parent))
		res := transport.Result{Stdout: stdout.finish(), Stderr: stderr.finish(), ExitCode: -1}
		if parent.Err() == nil {
			return res, fmt.Errorf("run %q: timeout %s: %s: %w", shown, cmd.Timeout, how, ctx.Err())
		}
		return res, fmt.Errorf("run %q: cancelled: %s: %w", shown, how, ctx.Err())
	}
	res := transport.Result{Stdout: stdout.finish(), Stderr: stderr.finish()}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case werr == nil:
		return res, nil
	case errors.As(werr, &exit):
		res.ExitCode = exit.ExitStatus()
		return res, &transport.ExitError{Line: line, Code: res.ExitCode, Stderr: res.Stderr, Stdout: res.Stdout}
	case errors.As(werr, &missing):
		res.ExitCode = -1
		return res, fmt.Errorf("run %q: %w", shown, c.disconnected(errors.New("the session ended without an exit status")))
	}
	res.ExitCode = -1
	return res, fmt.Errorf("run %q: %w", shown, c.connErr(werr))
}

// stop ends a command whose context ended and says how it ended: SIGTERM,
// then up to Grace for it to exit, then SIGKILL and the session closed. An
// abort skips or ends the grace.
func (c *Client) stop(sess *ssh.Session, waited <-chan error, abort <-chan struct{}) string {
	defer sess.Close()
	select {
	case <-abort:
		sess.Signal(ssh.SIGKILL)
		return "aborted: sent SIGKILL"
	default:
	}
	sess.Signal(ssh.SIGTERM)
	grace := time.NewTimer(c.o.Grace)
	defer grace.Stop()
	select {
	case werr := <-waited:
		var exit *ssh.ExitError
		if errors.As(werr, &exit) {
			if exit.Signal() != "" {
				return "stopped by SIG" + exit.Signal()
			}
			return fmt.Sprintf("stopped on SIGTERM with exit %d", exit.ExitStatus())
		}
		if werr == nil {
			return "stopped on SIGTERM with exit 0"
		}
		return "sent SIGTERM; the session ended"
	case <-grace.C:
		sess.Signal(ssh.SIGKILL)
		return fmt.Sprintf("sent SIGTERM, then SIGKILL after %s", c.o.Grace)
	case <-abort:
		sess.Signal(ssh.SIGKILL)
		return "sent SIGTERM, then SIGKILL: aborted"
	}
}

// output collects one stream of a command and copies it live. After finish
// it refuses writes, so nothing reaches the caller's writer once Run has
// returned (a killed session may still deliver data).
type output struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	live   io.Writer
	closed bool
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, io.ErrClosedPipe
	}
	o.buf.Write(p)
	if o.live != nil {
		// Live output is a courtesy copy: a failing viewer does not fail the command.
		o.live.Write(p)
	}
	return len(p), nil
}

func (o *output) finish() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return o.buf.Bytes()
}
