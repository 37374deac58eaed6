package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phoenix-hv/phoenix/transport"
)

// Client is an open SSH connection to one host, reused for every command and
// file transfer. It is safe for concurrent use.
type Client struct {
	o    Options
	name string
	conn *ssh.Client
	sem  chan struct{} // one token per open session (MaxSessions)
	done chan struct{} // closed once the connection is gone

	lostMu sync.Mutex
	lost   error // why the connection was dropped, when phoenix dropped it

	closeOnce sync.Once
	closeErr  error

	sftpLock chan struct{} // guards sftp; a channel so waiting honours ctx
	sftp     *sftpSession
}

var _ transport.Transport = (*Client)(nil)

// keepAliveMisses is how many keepalive intervals an answer may take before
// the connection counts as dead (OpenSSH's ServerAliveCountMax).
const keepAliveMisses = 3

var errConnectTimeout = errors.New("connect timeout")

// Dial connects and authenticates, checking the host key. ConnectTimeout
// bounds the TCP connection and the SSH handshake together.
func Dial(ctx context.Context, o Options) (*Client, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", o.Host, err)
	}
	c := &Client{
		o:        o,
		name:     "ssh " + o.User + "@" + net.JoinHostPort(o.Host, strconv.Itoa(o.Port)),
		sem:      make(chan struct{}, o.MaxSessions),
		done:     make(chan struct{}),
		sftpLock: make(chan struct{}, 1),
	}
	if o.Jump != nil {
		c.name += " via " + strings.TrimPrefix(o.Jump.name, "ssh ")
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	c.conn = conn
	go func() {
		conn.Wait()
		close(c.done)
	}()
	if o.KeepAlive > 0 {
		go c.keepalive(o.KeepAlive)
	}
	return c, nil
}

func (c *Client) dial(ctx context.Context) (*ssh.Client, error) {
	hk, err := newHostKeys(c.o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.o.ConnectTimeout, errConnectTimeout)
	defer cancel()
	k, err := loadKeys(ctx, c.o.IdentityFiles)
	if err != nil {
		return nil, err
	}
	defer k.close()
	addr := net.JoinHostPort(c.o.Host, strconv.Itoa(c.o.Port))
	raw, err := c.dialTCP(ctx, addr)
	if err != nil {
		return nil, c.dialError(ctx, "connect", err)
	}
	cfg := &ssh.ClientConfig{
		User:              c.o.User,
		Auth:              []ssh.AuthMethod{k.method()},
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algorithms(),
	}
	// The handshake has no context of its own: closing the connection is
	// what stops it (a jump channel has no deadlines to set).
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(raw, addr, cfg)
	if !stop() {
		if sc != nil {
			sc.Close()
		}
		return nil, c.dialError(ctx, "handshake", ctx.Err())
	}
	if err != nil {
		raw.Close()
		switch {
		case hk.refusal() != nil:
			return nil, hk.refusal()
		case strings.Contains(err.Error(), "unable to authenticate"): // x/crypto has no error type for it
			return nil, fmt.Errorf("%w as %s: %s", transport.ErrAuth, c.o.User, k.refused())
		case isConnError(err):
			return nil, fmt.Errorf("handshake: %w: %w", transport.ErrUnreachable, err)
		}
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func (c *Client) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if c.o.Jump != nil {
		return c.o.Jump.DialContext(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// dialError classifies a failure to connect: the connect timeout and network
// errors are ErrUnreachable; the caller's own cancellation is not.
func (c *Client) dialError(ctx context.Context, stage string, err error) error {
	if errors.Is(context.Cause(ctx), errConnectTimeout) {
		return fmt.Errorf("%s: %w: no answer within %s", stage, transport.ErrUnreachable, c.o.ConnectTimeout)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", stage, ctx.Err())
	}
	return fmt.Errorf("%s: %w: %w", stage, transport.ErrUnreachable, err)
}

// isConnError reports a connection that broke during the handshake (sshd
// still starting, MaxStartups, a reset): worth retrying like a refusal.
func isConnError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.As(err, &ne)
}

// DialContext opens a TCP connection from the remote host to addr
// (direct-tcpip). Dial uses it through Options.Jump to reach a guest behind
// the Proxmox node, or a host behind a ProxyJump.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.conn.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: open %s %s: %w", c.name, network, addr, c.connErr(err))
	}
	return conn, nil
}

// Name is "ssh user@host:port" (and " via user@jump:port" through a jump host).
func (c *Client) Name() string { return c.name }

// Close closes the SFTP client and the connection; a connection through this
// one as Jump breaks with it.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		select {
		case c.sftpLock <- struct{}{}:
			if c.sftp != nil {
				c.sftp.Close()
			}
			<-c.sftpLock
		default: // an SFTP open is under way; closing the connection ends it
		}
		err := c.conn.Close()
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			c.closeErr = fmt.Errorf("%s: close: %w", c.name, err)
		}
	})
	return c.closeErr
}

// closed reports whether the connection is gone.
func (c *Client) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// lose drops the connection for reason; commands waiting on it return
// ErrDisconnected.
func (c *Client) lose(reason error) {
	c.lostMu.Lock()
	if c.lost == nil {
		c.lost = reason
	}
	c.lostMu.Unlock()
	c.conn.Close()
}

// connErr turns err into ErrDisconnected when the connection is gone.
func (c *Client) connErr(err error) error {
	if c.closed() || c.lostReason() != nil {
		return c.disconnected(err)
	}
	return err
}

// sessionErr is why a new session could not be opened: the server refusing
// the channel (MaxSessions reached) is its answer; anything else (EOF, a
// reset) is the connection gone, though its reader may not have noticed yet.
func (c *Client) sessionErr(err error) error {
	var refused *ssh.OpenChannelError
	if errors.As(err, &refused) {
		return c.connErr(err)
	}
	return c.disconnected(err)
}

// disconnected is ErrDisconnected naming the host (a run talks to a node
// and guests at once), with why phoenix dropped the connection, or else
// detail.
func (c *Client) disconnected(detail error) error {
	if reason := c.lostReason(); reason != nil {
		detail = reason
	}
	return fmt.Errorf("%w to %s: %v", transport.ErrDisconnected, strings.TrimPrefix(c.name, "ssh "), detail)
}

func (c *Client) lostReason() error {
	c.lostMu.Lock()
	defer c.lostMu.Unlock()
	return c.lost
}

// acquire takes a session slot, waiting for one while ctx allows.
func (c *Client) acquire(ctx context.Context) (release func(), err error) {
	select {
	case c.sem <- struct{}{}:
		return func() { <-c.sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a free session: %w", ctx.Err())
	case <-c.done:
		return nil, c.connErr(errors.New("connection closed"))
	}
}

// keepalive sends keepalive@openssh.com every interval and drops the
// connection when a request fails or no answer comes within
// keepAliveMisses intervals, so nothing waits forever on a dead peer.
func (c *Client) keepalive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		answer := make(chan error, 1)
		go func() {
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			answer <- err
		}()
		limit := time.NewTimer(keepAliveMisses * every)
		select {
		case err := <-answer:
			limit.Stop()
			if err != nil {
				c.lose(fmt.Errorf("keepalive: %w", err))
				return
			}
		case <-limit.C:
			c.lose(fmt.Errorf("no keepalive answer within %s", keepAliveMisses*every))
			return
		case <-c.done:
			limit.Stop()
			return
		}
	}
}
