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
	// Transfer bounds Put and Get by their size (zero: transport.Pace's
	// defaults).
	Transfer transport.Pace
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
// stdin: the guest would see a clean end of file. The content is streamed,
// under a deadline that grows with its size (Transfer).
func (s Sudo) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	u, err := transport.NewUpload(path, s.Rand)
	if err != nil {
		return err
	}
	sum := sha256.New()
	src := &trackedReader{r: io.TeeReader(r, sum)}
	tr := s.Transfer.Watch(ctx)
	res, err := s.Run(tr.Context(), transport.Cmd{Line: u.Begin(), Stdin: tr.Reader(src)})
	err = tr.Err(err)
	tr.Stop()
	id := strings.TrimSpace(string(res.Stdout))
	if err == nil && src.err != nil {
		err = fmt.Errorf("read: %w", src.err)
	}
	if err == nil {
		// The commit reads the file once more (sha256) and renames it; it
		// cleans up after itself when it fails.
		commit := transport.Cmd{Line: u.Commit(id, hex.EncodeToString(sum.Sum(nil)), a), Timeout: s.Transfer.Limit(src.n)}
		if _, err = s.Run(ctx, commit); err != nil {
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

// trackedReader remembers a read error, which a transport may not report,
// and counts the bytes read.
type trackedReader struct {
	r   io.Reader
	n   int64
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// Get reads path as root with `sudo -n cat`, under a deadline that grows
// with what has arrived; w gets the file only whole.
func (s Sudo) Get(ctx context.Context, path string, w io.Writer) error {
	tr := s.Transfer.Watch(ctx)
	defer tr.Stop()
	res, err := s.T.Run(tr.Context(), transport.Cmd{Line: transport.Command("sudo", "-n", "cat", path), Stdout: tr.Writer(io.Discard)})
	if err = tr.Err(err); err != nil {
		return fmt.Errorf("get %s: %w", path, transport.MarkNotExist(err))
	}
	_, err = w.Write(res.Stdout)
	return err
}
