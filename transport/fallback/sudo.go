package fallback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// Sudo is a transport logged in as a user other than root that does
// everything as root through `sudo -n` (never a password prompt): SFTP as
// that user could not write /etc, so files move through sudo too.
type Sudo struct {
	T transport.Transport
	// Rand names uploads' private directories; nil is crypto/rand.
	Rand io.Reader
}

var _ transport.Transport = Sudo{}

func (s Sudo) Name() string { return s.T.Name() }
func (s Sudo) Close() error { return s.T.Close() }

// Run runs cmd.Line as root with `sudo -n sh -c`. An *ExitError names the
// caller's line, not the wrapper.
func (s Sudo) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	line := cmd.Printable()
	cmd.Line = "sudo -n sh -c " + transport.Quote(cmd.Line)
	cmd.Secrets = transport.RequotedSecrets(cmd.Secrets)
	res, err := s.T.Run(ctx, cmd)
	var ee *transport.ExitError
	if errors.As(err, &ee) {
		ee.Line = line
	}
	return res, err
}

// Put streams r as root into an upload's private directory next to path
// (transport.Upload: never through a symlink a guest user planted), then, in
// a second command, checks its sha256, sets its owner and mode and renames
// it over path. Two steps because a source that fails mid-stream only closes
// stdin: the guest would see a clean end of file.
func (s Sudo) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	u, err := transport.NewUpload(path, s.Rand)
	if err != nil {
		return err
	}
	sum := sha256.New()
	src := &trackedReader{r: io.TeeReader(r, sum)}
	res, err := s.Run(ctx, transport.Cmd{Line: u.Begin(), Stdin: src})
	id := strings.TrimSpace(string(res.Stdout))
	if err == nil && src.err != nil {
		err = fmt.Errorf("read: %w", src.err)
	}
	if err == nil {
		// The commit cleans up after itself when it fails.
		if _, err = s.Run(ctx, transport.Cmd{Line: u.Commit(id, hex.EncodeToString(sum.Sum(nil)), a)}); err != nil {
			return fmt.Errorf("put %s: %w", path, err)
		}
		return nil
	}
	// Best effort, also when ctx has ended (a cancelled run must not leave
	// the upload behind): the error in hand is the one that matters.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	s.Run(cctx, transport.Cmd{Line: u.Abort(id)})
	cancel()
	return fmt.Errorf("put %s: %w", path, transport.MarkNotExist(err))
}

// cleanupTimeout bounds removing the temp file of a failed Put.
const cleanupTimeout = 15 * time.Second

// trackedReader remembers a read error, which a transport may not report.
type trackedReader struct {
	r   io.Reader
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// Get reads path as root with `sudo -n cat`; w gets the file only whole.
func (s Sudo) Get(ctx context.Context, path string, w io.Writer) error {
	res, err := s.T.Run(ctx, transport.Cmd{Line: transport.Command("sudo", "-n", "cat", path)})
	if err != nil {
		return fmt.Errorf("get %s: %w", path, transport.MarkNotExist(err))
	}
	_, err = w.Write(res.Stdout)
	return err
}
