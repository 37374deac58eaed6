package fallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	pathpkg "path"
	"strings"

	"github.com/phoenix-hv/phoenix/transport"
)

// Sudo is a transport logged in as a user other than root that does
// everything as root through `sudo -n` (never a password prompt): SFTP as
// that user could not write /etc, so files move through sudo too.
type Sudo struct{ T transport.Transport }

var _ transport.Transport = Sudo{}

func (s Sudo) Name() string { return s.T.Name() }
func (s Sudo) Close() error { return s.T.Close() }

// Run runs cmd.Line as root with `sudo -n sh -c`.
func (s Sudo) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	cmd.Line = "sudo -n sh -c " + transport.Quote(cmd.Line)
	return s.T.Run(ctx, cmd)
}

// Put streams r as root into a temp file next to path (created unreadable to
// others, binary-safe on stdin), sets its mode and renames it over path.
func (s Sudo) Put(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	dir, base := pathpkg.Split(path)
	tmp := transport.Quote(dir + "." + base + ".phoenix-tmp")
	line := fmt.Sprintf("umask 077 && cat > %s && chmod %04o %s && mv -f %s %s || { rm -f %s; exit 1; }",
		tmp, mode.Perm(), tmp, tmp, transport.Quote(path), tmp)
	if _, err := s.Run(ctx, transport.Cmd{Line: line, Stdin: r}); err != nil {
		return fmt.Errorf("put %s: %w", path, notExist(err))
	}
	return nil
}

// Get reads path as root with `sudo -n cat`; w gets the file only whole.
func (s Sudo) Get(ctx context.Context, path string, w io.Writer) error {
	res, err := s.T.Run(ctx, transport.Cmd{Line: transport.Command("sudo", "-n", "cat", path)})
	if err != nil {
		return fmt.Errorf("get %s: %w", path, notExist(err))
	}
	_, err = w.Write(res.Stdout)
	return err
}

// notExist adds fs.ErrNotExist to a command that failed on a missing path,
// as SFTP would report it.
func notExist(err error) error {
	var ee *transport.ExitError
	if errors.As(err, &ee) && strings.Contains(string(ee.Stderr), "No such file or directory") {
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	}
	return err
}
