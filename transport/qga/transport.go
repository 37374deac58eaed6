package qga

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// GuestEnv is set before every guest command: agent exec has no login
// environment, and a step must behave the same over the agent and SSH.
const GuestEnv = "export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8; "

const (
	// putChunk is what one exec carries on stdin (as base64 in its
	// request: the agent's JSON parser takes tokens up to 64 MiB).
	putChunk = 8 << 20
	// getChunk is what one exec reads back when a file is over the 16 MiB
	// the agent keeps of a command's output (as base64: ~11 MiB).
	getChunk = 8 << 20
	// readCap is the most of a command's output the agent keeps.
	readCap = 16 << 20
)

// Transport is the guest of VM VMID through its agent socket: commands
// run with /bin/sh as root, files move through commands (transport.Upload).
type Transport struct {
	Client
	// DefaultTimeout bounds a command when neither Cmd.Timeout nor the
	// context gives a deadline: an agent command is never waited on forever.
	DefaultTimeout time.Duration
	// Rand names uploads' private directories; nil is crypto/rand.
	Rand io.Reader
	// Transfer bounds each command of a Put or Get by the bytes it moves;
	// the zero Pace is transport's default.
	Transfer transport.Pace

	// turn lets one batch at a time talk to the agent: it serves one
	// client at a time, and a second one waits.
	turnOnce sync.Once
	turn     chan struct{}
}

var _ transport.Transport = (*Transport)(nil)

// New returns the transport of VM vmid, whose node is node.
func New(node transport.Runner, vmid int) *Transport {
	return &Transport{Client: Client{Node: node, VMID: vmid}, DefaultTimeout: time.Hour}
}

// Name says which channel this is.
func (t *Transport) Name() string { return "agent vm " + strconv.Itoa(t.VMID) }

// Close does nothing: the node connection belongs to the caller.
func (t *Transport) Close() error { return nil }

// Ping reports whether the agent answers (nil) or why not.
func (t *Transport) Ping(ctx context.Context) error {
	release, err := t.take(ctx)
	if err != nil {
		return err
	}
	defer release()
	return t.Client.Ping(ctx)
}

func (t *Transport) take(ctx context.Context) (func(), error) {
	t.turnOnce.Do(func() { t.turn = make(chan struct{}, 1) })
	select {
	case t.turn <- struct{}{}:
		return func() { <-t.turn }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run runs cmd.Line with /bin/sh in the guest. Output reaches cmd.Stdout
// and cmd.Stderr when the command ends: the agent cannot stream.
func (t *Transport) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	e := Exec{Path: "/bin/sh", Args: []string{"-c", GuestEnv + cmd.Line}}
	if cmd.Stdin != nil {
		b, err := io.ReadAll(cmd.Stdin)
		if err != nil {
			return transport.Result{}, fmt.Errorf("read stdin: %w", err)
		}
		e.Stdin = b
	}
	var err error
	if e.Timeout, err = transport.Bound(ctx, cmd.Timeout, t.DefaultTimeout); err != nil {
		return transport.Result{}, err
	}
	release, err := t.take(ctx)
	if err != nil {
		return transport.Result{}, err
	}
	sts, err := t.Client.Exec(ctx, e)
	release()
	var lost *LostError
	switch {
	case errors.As(err, &lost) && !lost.Timeout:
		// It may be running or have done its work: it must not run again
		// elsewhere (transport.StatusUnknownError).
		return transport.Result{}, &transport.StatusUnknownError{Line: cmd.Printable(), Channel: t.Name(), PID: lost.PID, Cause: err}
	case err != nil:
		return transport.Result{}, fmt.Errorf("run %q: %w", transport.Shorten(cmd.Printable(), 120), err)
	}
	return Result(sts[0], cmd)
}

// Result is a Runner's answer for cmd, whose process ended with st: its
// output (copied to cmd.Stdout and cmd.Stderr), and an *ExitError for a
// non-zero exit (128+N, as a shell says it, for signal N).
func Result(st Status, cmd transport.Cmd) (transport.Result, error) {
	res := transport.Result{Stdout: st.Stdout, Stderr: st.Stderr}
	if cmd.Stdout != nil {
		cmd.Stdout.Write(res.Stdout)
	}
	if cmd.Stderr != nil {
		cmd.Stderr.Write(res.Stderr)
	}
	switch {
	case st.ExitCode != nil:
		res.ExitCode = *st.ExitCode
	case st.Signal != nil:
		res.ExitCode = 128 + *st.Signal
	default:
		return res, fmt.Errorf("run %q: exec-status has neither exitcode nor signal", cmd.Printable())
	}
	if res.ExitCode != 0 {
		ee := &transport.ExitError{Line: cmd.Printable(), Code: res.ExitCode, Stderr: res.Stderr, Stdout: res.Stdout}
		if st.ExitCode == nil {
			return res, fmt.Errorf("killed by signal %d: %w", *st.Signal, ee)
		}
		return res, ee
	}
	if st.OutTruncated || st.ErrTruncated {
		return res, fmt.Errorf("run %q: %w", transport.Shorten(cmd.Printable(), 120), errTruncated)
	}
	return res, nil
}

// Put writes r to path atomically, never through a symlink a guest user
// planted (transport.PutChunks).
func (t *Transport) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	return transport.PutChunks(ctx, t, path, r, a, putChunk, t.Transfer, t.Rand)
}

// Get copies path to w, which is written only once the whole file arrived.
// The file comes back as one command's output; one over the 16 MiB the
// agent keeps is read again in chunks.
func (t *Transport) Get(ctx context.Context, path string, w io.Writer) error {
	res, err := t.Run(ctx, transport.Cmd{Line: "cat -- " + transport.Quote(path), Timeout: t.Transfer.Limit(readCap)})
	b := res.Stdout
	if errors.Is(err, errTruncated) {
		b, err = transport.GetChunks(ctx, t, path, getChunk, t.Transfer)
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", path, transport.MarkNotExist(err))
	}
	_, err = w.Write(b)
	return err
}

// errTruncated marks a command whose output the agent cut.
var errTruncated = errors.New("output cut by the guest agent at 16 MiB per stream")
