// Package transport defines how phoenix reaches a machine: run a command line,
// put and get files. The Proxmox node, a guest over SSH and a guest through the
// QEMU guest agent all implement the same small interfaces, so tasks do not
// care which one carries them.
package transport

import (
	"context"
	"io"
	"time"
)

// Cmd is one remote command line. Line must be built with Quote or Command:
// no config value may reach a shell unquoted.
type Cmd struct {
	Line string
	// Stdin, when set, is copied to the command's standard input and closed.
	Stdin io.Reader
	// Stdout and Stderr, when set, receive a live copy of the output (progress a
	// person can follow); Result still holds all of it.
	Stdout io.Writer
	Stderr io.Writer
	// Secrets are substrings masked in every printed form of Line.
	Secrets []string
	// Timeout bounds this command; zero means only ctx bounds it.
	Timeout time.Duration
	// Probe marks a command that only reads (qm config, cat, stat): the one
	// kind a task's Check may run. The runner refuses any other while a
	// task checks, so a dry run changes nothing by construction.
	Probe bool
}

// Printable is the command line as it may be shown to a person or logged.
func (c Cmd) Printable() string { return Redact(c.Line, c.Secrets) }

// Result is what a finished command left behind.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Runner runs command lines. A command that ran and exited non-zero returns
// its Result and an *ExitError; a command that could not be run or whose
// connection broke returns another error.
type Runner interface {
	Run(ctx context.Context, cmd Cmd) (Result, error)
}

// Files moves whole files. Put is atomic: the destination is either the old
// file or the complete new one, with attrs already set (a new file in the
// same directory, renamed over path). It never writes through a symlink: a
// symlink at path is replaced, its target left alone.
type Files interface {
	Put(ctx context.Context, path string, r io.Reader, attrs Attrs) error
	Get(ctx context.Context, path string, w io.Writer) error
}

// Transport is a connection to one machine.
type Transport interface {
	Runner
	Files
	// Name says which channel this is, for logs: "ssh root@10.0.0.5", "agent vm 8101".
	Name() string
	Close() error
}

// Bound is how long a command may run: the sooner of timeout and ctx's
// deadline, else def, else an hour (nothing is waited on forever);
// context.DeadlineExceeded when ctx has no time left. It is rounded up to
// whole milliseconds.
func Bound(ctx context.Context, timeout, def time.Duration) (time.Duration, error) {
	d := timeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return 0, context.DeadlineExceeded
		}
		if d <= 0 || left < d {
			d = left
		}
	}
	if d <= 0 {
		d = def
	}
	if d <= 0 {
		d = time.Hour
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond), nil
}
