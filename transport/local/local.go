// Package local runs command lines on this machine with /bin/sh. Tests use it
// as a real Runner without a network; it is not used to reach any host.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// Shell is a transport.Transport on the local machine.
type Shell struct{}

var _ transport.Transport = Shell{}

func (Shell) Name() string { return "local" }
func (Shell) Close() error { return nil }

func (Shell) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if cmd.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmd.Timeout)
		defer cancel()
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd.Line)
	// Cancel kills the whole process group: children of sh hold the output
	// pipes too, and Run must return as soon as ctx ends.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = time.Second
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = tee(&out, cmd.Stdout), tee(&errb, cmd.Stderr)
	var err error
	if cmd.Stdin != nil {
		// Copied by our own goroutine, as over SSH: the command may end
		// without reading it all, and Run returns then, whatever Stdin does.
		var in io.WriteCloser
		if in, err = c.StdinPipe(); err != nil {
			return transport.Result{}, err
		}
		go func() {
			io.Copy(in, cmd.Stdin)
			in.Close()
		}()
	}
	err = c.Run()
	res := transport.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.ExitCode = ee.ExitCode()
		return res, &transport.ExitError{Line: cmd.Printable(), Code: res.ExitCode, Stderr: res.Stderr, Stdout: res.Stdout}
	case ctx.Err() != nil:
		return res, ctx.Err()
	default:
		return res, err
	}
}

func tee(buf *bytes.Buffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// Put writes a temp file created exclusively next to path (never through
// a symlink), sets its owner and mode through its descriptor, and renames
// it over path.
func (Shell) Put(_ context.Context, path string, r io.Reader, a transport.Attrs) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".phoenix-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return err
	}
	if a.Owner != "" {
		if err := chown(tmp, a.Owner); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Chmod(a.Mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (Shell) Get(_ context.Context, path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// chown sets f's owner from "user", "user:group" or numeric ids.
func chown(f *os.File, owner string) error {
	name, group, withGroup := strings.Cut(owner, ":")
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return fmt.Errorf("owner %s: %w", owner, err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid := -1
	switch {
	case withGroup && group == "":
		gid, _ = strconv.Atoi(u.Gid)
	case withGroup:
		g, err := user.LookupGroup(group)
		if err != nil {
			if g, err = user.LookupGroupId(group); err != nil {
				return fmt.Errorf("owner %s: %w", owner, err)
			}
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return f.Chown(uid, gid)
}
