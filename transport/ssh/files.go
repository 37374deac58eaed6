package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/phoenix-hv/phoenix/transport"
)

// Put writes r to the remote path atomically: into a temp file
// ".<base>.phoenix-<random>" in the same directory, created exclusively (so
// never through a planted symlink), given its owner and mode through its
// handle before any byte is written, then renamed over path (a symlink at
// path is replaced, not followed). On any error the temp file is removed and
// path is left as it was. The transfer is streamed and ends with a
// *transport.TooSlowError when it falls behind Options.Transfer.
func (c *Client) Put(ctx context.Context, p string, r io.Reader, a transport.Attrs) error {
	if err := c.put(ctx, p, r, a); err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	return nil
}

func (c *Client) put(ctx context.Context, p string, r io.Reader, a transport.Attrs) error {
	uid, gid := -1, -1
	if a.Owner != "" {
		var err error
		if uid, gid, err = c.ids(ctx, a.Owner); err != nil {
			return err
		}
	}
	tr := c.o.Transfer.Watch(ctx)
	defer tr.Stop()
	ctx = tr.Context()
	sc, done, err := c.sftpClient(ctx)
	if err != nil {
		return tr.Err(err)
	}
	defer done()
	stop := c.abortWhenTooSlow(tr, sc)
	defer stop()
	tmp, err := transport.TempName(p, nil)
	if err != nil {
		return err
	}
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return tr.Err(c.connErr(err))
	}
	committed := false
	defer func() {
		if !committed {
			c.removeTemp(sc, f, tmp)
		}
	}()
	if uid >= 0 {
		if gid < 0 {
			st, err := f.Stat()
			if err != nil {
				return fmt.Errorf("stat %s: %w", tmp, c.connErr(err))
			}
			gid = int(st.Sys().(*sftp.FileStat).GID)
		}
		// Before chmod: chown clears the setuid and setgid bits.
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, c.connErr(err))
		}
	}
	if err := f.Chmod(a.Mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, c.connErr(err))
	}
	if _, err := f.ReadFrom(sizeless{tr.Reader(r)}); err != nil {
		return tr.Err(c.connErr(err))
	}
	if err := f.Close(); err != nil {
		return tr.Err(c.connErr(err))
	}
	if err := rename(sc, tmp, p); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, tr.Err(c.connErr(err)))
	}
	committed = true
	// Someone who can write the directory could have swapped the temp name
	// for something else before the rename; nothing was written through it,
	// but the destination is then not our file.
	if st, err := sc.Lstat(p); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s was replaced while it was written (is %s writable by another user?)", p, path.Dir(p))
	}
	return nil
}

// ids resolves a chown-style owner ("user", "user:group", numeric ids) on
// the remote host; gid is -1 when the group stays as it is.
func (c *Client) ids(ctx context.Context, owner string) (uid, gid int, err error) {
	user, group, withGroup := strings.Cut(owner, ":")
	line := "id -u -- " + transport.Quote(user)
	switch {
	case withGroup && group == "":
		line += " && id -g -- " + transport.Quote(user) // chown's "user:" is the login group
	case withGroup:
		line += " && getent group -- " + transport.Quote(group) + " | cut -d: -f3"
	}
	res, err := c.Run(ctx, transport.Cmd{Line: line, Timeout: time.Minute})
	if err != nil {
		return 0, 0, fmt.Errorf("owner %s: %w", owner, err)
	}
	f := strings.Fields(string(res.Stdout))
	gid = -1
	if len(f) > 0 {
		uid, err = strconv.Atoi(f[0])
	}
	if err == nil && withGroup {
		gid, err = -1, errors.New("no such group")
		if len(f) == 2 {
			gid, err = strconv.Atoi(f[1])
		}
	}
	if len(f) == 0 || err != nil {
		return 0, 0, fmt.Errorf("owner %s: no such user or group on the host (%s printed %q)", owner, line, transport.Tail(res.Stdout, 2))
	}
	return uid, gid, nil
}

// rename moves tmp over p, atomically where the server has the OpenSSH
// posix-rename extension; plain SFTP rename refuses to replace a file.
func rename(sc *sftpSession, tmp, p string) error {
	if _, ok := sc.HasExtension("posix-rename@openssh.com"); ok {
		return sc.PosixRename(tmp, p)
	}
	if err := sc.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return sc.Rename(tmp, p)
}

// Get streams the remote file at p to w. A missing file is an error wrapping
// fs.ErrNotExist.
func (c *Client) Get(ctx context.Context, p string, w io.Writer) error {
	if err := c.get(ctx, p, w); err != nil {
		return fmt.Errorf("get %s: %w", p, err)
	}
	return nil
}

func (c *Client) get(ctx context.Context, p string, w io.Writer) error {
	tr := c.o.Transfer.Watch(ctx)
	defer tr.Stop()
	sc, done, err := c.sftpClient(tr.Context())
	if err != nil {
		return tr.Err(err)
	}
	defer done()
	stop := c.abortWhenTooSlow(tr, sc)
	defer stop()
	f, err := sc.Open(p)
	if err != nil {
		return tr.Err(c.connErr(err))
	}
	defer f.Close()
	if _, err := f.WriteTo(tr.Writer(w)); err != nil {
		return tr.Err(c.connErr(err))
	}
	return nil
}

// abortWhenTooSlow closes sc when the transfer falls behind its pace:
// pkg/sftp has no context, and a request to a server that stopped
// answering waits forever. The connection's SFTP session serves every
// transfer, so they all fail then, and the next one opens a new session.
// A caller's cancellation only stops feeding the transfer.
func (c *Client) abortWhenTooSlow(tr *transport.Transfer, sc *sftpSession) (stop func() bool) {
	return context.AfterFunc(tr.Context(), func() {
		var slow *transport.TooSlowError
		if errors.As(context.Cause(tr.Context()), &slow) {
			sc.kill()
		}
	})
}

// removeTemp closes and removes the temp file of a failed Put. When the
// SFTP session is gone (a transfer too slow, a killed sftp-server), it is
// removed with rm over a new session, bounded: the error in hand matters.
func (c *Client) removeTemp(sc *sftpSession, f *sftp.File, tmp string) {
	f.Close()
	if err := sc.Remove(tmp); err == nil || errors.Is(err, fs.ErrNotExist) || c.closed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	c.Run(ctx, transport.Cmd{Line: transport.Command("rm", "-f", "--", tmp)})
}

// cleanupTimeout bounds removing the temp file of a failed Put.
const cleanupTimeout = 15 * time.Second

// sftpSession is an SFTP client and the SSH session it talks through.
type sftpSession struct {
	*sftp.Client
	sess *ssh.Session
	dead chan struct{} // closed once the client has ended and its session slot is free
}

// kill ends the session, which fails every request still waiting for an
// answer (closing only the client would wait for a server that hung).
func (s *sftpSession) kill() { s.sess.Close() }

// sftpClient returns the connection's SFTP client, opening it on first use
// or after it broke; done is called when the transfer ends. An open SFTP
// session holds one session slot. With MaxSessions 1 a kept one would starve
// Run, so then each transfer opens its own and done closes it.
func (c *Client) sftpClient(ctx context.Context) (sc *sftpSession, done func(), err error) {
	if c.o.MaxSessions < 2 {
		sc, err := c.openSFTP(ctx)
		if err != nil {
			return nil, nil, err
		}
		return sc, func() { sc.Close() }, nil
	}
	select {
	case c.sftpLock <- struct{}{}:
		defer func() { <-c.sftpLock }()
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if c.sftp != nil {
		select {
		case <-c.sftp.dead:
			c.sftp = nil
		default:
			return c.sftp, func() {}, nil
		}
	}
	sc, err = c.openSFTP(ctx)
	if err != nil {
		return nil, nil, err
	}
	c.sftp = sc
	return sc, func() {}, nil
}

// openSFTP starts the sftp subsystem in a new session.
func (c *Client) openSFTP(ctx context.Context) (*sftpSession, error) {
	release, err := c.acquire(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := c.conn.NewSession()
	if err != nil {
		release()
		return nil, fmt.Errorf("sftp: %w", c.sessionErr(err))
	}
	fail := func(err error) (*sftpSession, error) {
		sess.Close()
		release()
		return nil, fmt.Errorf("sftp: %w", c.connErr(err))
	}
	w, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		return fail(err)
	}
	// The SFTP handshake has no context: closing the session stops it.
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	sc, err := sftp.NewClientPipe(r, w, sftp.UseConcurrentWrites(true))
	if !stop() {
		if sc != nil {
			sc.Close()
		}
		return fail(ctx.Err())
	}
	if err != nil {
		return fail(err)
	}
	s := &sftpSession{Client: sc, sess: sess, dead: make(chan struct{})}
	go func() {
		sc.Wait()
		sess.Close()
		release()
		close(s.dead)
	}()
	return s, nil
}

// sizeless hides the reader's size: sftp.File.ReadFrom looks at
// Len/Size/Stat only to size its pool of requests, and with a size of -1 it
// still writes concurrently.
type sizeless struct{ io.Reader }

func (sizeless) Size() int64 { return -1 }
