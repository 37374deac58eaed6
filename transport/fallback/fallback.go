// Package fallback picks the way into a guest: the QEMU guest agent when it
// answers, SSH when only SSH does, and it switches per step when the agent
// dies mid-run. The agent is never a single point of failure, and neither
// is SSH while the agent answers.
package fallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phoenix-hv/phoenix/transport"
	sshtransport "github.com/phoenix-hv/phoenix/transport/ssh"
)

// Options configures a Guest.
type Options struct {
	VMID int
	// Agent is the agent transport of the VM (transport/agent); nil when the
	// VM has no agent. When it has Ping(ctx) error, Wait uses that to probe.
	Agent transport.Transport
	// DialSSH opens an SSH connection to the guest; nil when SSH is not
	// configured. It must dial with the strict host key policy and the alias
	// sshtransport.GuestHostKeyAlias(VMID), so only a pinned key is accepted.
	DialSSH func(ctx context.Context) (transport.Transport, error)
	// Timeout bounds the wait for the first channel (the VM's agent
	// timeout); default 300s.
	Timeout time.Duration
	Log     func(format string, args ...any)

	// SSHUser is the user DialSSH logs in as. Any user but root ("" counts
	// as root) runs commands through `sudo -n` and moves files through it.
	SSHUser string
	// KnownHosts is the file where guest host keys are pinned (Env's
	// GuestKnownHosts). When the agent answers and no key is pinned for the
	// VM, its SSH host key is read through the agent and pinned there, so a
	// later SSH fallback is verified. Empty: no pinning.
	KnownHosts string
	// PinHostKey writes the pin; default transport/ssh.PinHostKey.
	PinHostKey func(file, alias string, key ssh.PublicKey) error
	// ProbeInterval is the time between two probes of one channel while
	// waiting; default 2s.
	ProbeInterval time.Duration
	// Rand names the private directories of uploads made through sudo; nil
	// is crypto/rand.
	Rand io.Reader
	// LargeFile is the size (a transport.Sized reader's) from which Put
	// sends a file over SSH while the agent is the channel and SSH answers:
	// the agent moves some 6 MB/s, SSH several times that (docs/BENCHMARKS.md).
	// Default DefaultLargeFile; negative: never.
	LargeFile int64
}

// DefaultLargeFile: from 8 MiB on, a file saves more than a second over
// SSH, which pays for a connection the run may not have needed.
const DefaultLargeFile = 8 << 20

// largeFileDial bounds the SSH dial for a large file: a guest whose SSH
// port drops packets must not hold the file back longer than the agent
// would take for a good part of it.
const largeFileDial = 5 * time.Second

// Guest is a tasks.Guest that chooses its channel.
type Guest struct {
	o Options

	waitMu sync.Mutex // one wait (or switch to SSH) at a time

	mu        sync.Mutex
	ready     bool                // a channel has been chosen
	useSSH    bool                // the chosen channel is SSH
	agentDead error               // why the agent was given up
	ssh       transport.Transport // open SSH connection (sudo-wrapped), if any

	pin pinState
}

// New returns a Guest; nothing is contacted until Wait or a first command.
func New(o Options) *Guest {
	if o.Timeout <= 0 {
		o.Timeout = 300 * time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 2 * time.Second
	}
	if o.PinHostKey == nil {
		o.PinHostKey = sshtransport.PinHostKey
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if o.LargeFile == 0 {
		o.LargeFile = DefaultLargeFile
	}
	return &Guest{o: o}
}

// Name is the channel in use: "agent vm 8101" or "ssh phoenix@10.0.0.5:22".
func (g *Guest) Name() string {
	t, _ := g.current()
	if t == nil {
		return "vm " + strconv.Itoa(g.o.VMID) + " (no channel yet)"
	}
	return t.Name()
}

// Channel is "agent" or "ssh" for events; "" before a channel is chosen.
func (g *Guest) Channel() string {
	t, agent := g.current()
	switch {
	case t == nil:
		return ""
	case agent:
		return "agent"
	}
	return "ssh"
}

// current is the chosen transport and whether it is the agent.
func (g *Guest) current() (transport.Transport, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !g.ready:
		return nil, false
	case g.useSSH:
		return g.ssh, false
	}
	return g.o.Agent, true
}

// Close closes whatever was opened.
func (g *Guest) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	if g.ssh != nil {
		errs = append(errs, g.ssh.Close())
		g.ssh = nil
	}
	if g.o.Agent != nil {
		errs = append(errs, g.o.Agent.Close())
	}
	g.ready = false
	return errors.Join(errs...)
}

// Run runs cmd over the chosen channel. A command is run at most once: it
// runs again over SSH only when the agent proves it never started it (the
// agent was not running, or refused the exec). A command the agent may have
// started fails with a *transport.StatusUnknownError, and later commands
// go over SSH.
func (g *Guest) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	in := &input{r: cmd.Stdin}
	defer in.Close()
	var res transport.Result
	err := g.do(ctx, false, func(t transport.Transport, agent bool) error {
		c := cmd
		if cmd.Stdin != nil {
			r, err := in.reader(agent)
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			c.Stdin = r
		}
		var err error
		res, err = t.Run(ctx, c)
		return err
	})
	return res, err
}

// Put writes r to path over the chosen channel. An upload is idempotent
// (the same bytes under the same name, each try in its own private
// directory, renamed in one step), so when the agent stops answering at
// any stage it is done again, whole, over SSH.
func (g *Guest) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	in := &input{r: r}
	defer in.Close()
	if n := transport.SizeOf(r); g.o.LargeFile > 0 && n >= g.o.LargeFile {
		if done, err := g.putLarge(ctx, path, n, in, a); done {
			return err
		}
	}
	return g.do(ctx, true, func(t transport.Transport, agent bool) error {
		r, err := in.reader(agent)
		if err != nil {
			return fmt.Errorf("put %s: read: %w", path, err)
		}
		return t.Put(ctx, path, r, a)
	})
}

// putLarge sends a large file over SSH while the agent is the channel.
// done is false when it did not (not the agent, no SSH, or SSH broke on
// the way): the caller then sends it on the chosen channel, from what in
// kept.
func (g *Guest) putLarge(ctx context.Context, path string, n int64, in *input, a transport.Attrs) (done bool, err error) {
	if err := g.Wait(ctx); err != nil {
		return true, err
	}
	if _, agent := g.current(); !agent || g.o.DialSSH == nil {
		return false, nil
	}
	dctx, cancel := context.WithTimeout(ctx, largeFileDial)
	t, err := g.sideSSH(dctx)
	cancel()
	if err != nil {
		g.o.Log("vm %d: %s (%d MiB) goes through the agent: SSH: %v", g.o.VMID, path, n>>20, err)
		return false, nil
	}
	g.o.Log("vm %d: %s (%d MiB) goes over %s, faster than the agent for a large file", g.o.VMID, path, n>>20, t.Name())
	r, err := in.reader(true) // kept: the agent sends it again if SSH breaks
	if err != nil {
		return true, err
	}
	err = t.Put(ctx, path, r, a)
	if errors.Is(err, transport.ErrDisconnected) {
		g.dropSSH(t)
		g.o.Log("vm %d: %v; sending %s through the agent", g.o.VMID, err, path)
		return false, nil
	}
	return true, err
}

// sideSSH is the SSH connection beside the agent: the one open (the wait
// may have dialed it), else a new one, kept for later large files and for
// the switch to SSH if the agent dies.
func (g *Guest) sideSSH(ctx context.Context) (transport.Transport, error) {
	g.mu.Lock()
	t := g.ssh
	g.mu.Unlock()
	if t != nil {
		return t, nil
	}
	p := g.probeOnce(ctx, false)
	if p.err != nil {
		return nil, p.err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ssh != nil { // another call dialed meanwhile
		p.t.Close()
		return g.ssh, nil
	}
	g.ssh = p.t
	return p.t, nil
}

// Get copies path to w over the chosen channel; like Put, it is done again
// over SSH when the agent stops answering. The agent writes to w only once
// it has the whole file, so a retry never duplicates bytes.
func (g *Guest) Get(ctx context.Context, path string, w io.Writer) error {
	return g.do(ctx, true, func(t transport.Transport, _ bool) error { return t.Get(ctx, path, w) })
}

// do runs op on the chosen channel. agent tells op that the channel is the
// agent, so it may have to run again over SSH and must keep its input.
// When the agent stops answering, later calls go over SSH; op itself runs
// again over SSH only when it is idempotent or the agent never started it.
// When the SSH connection breaks, the next call dials again.
func (g *Guest) do(ctx context.Context, idempotent bool, op func(t transport.Transport, agent bool) error) error {
	if err := g.Wait(ctx); err != nil {
		return err
	}
	t, agent := g.current()
	if t == nil {
		return fmt.Errorf("vm %d: guest closed", g.o.VMID)
	}
	err := op(t, agent)
	switch {
	case !agent && errors.Is(err, transport.ErrDisconnected):
		g.dropSSH(t)
		return err
	case !agent || !errors.Is(err, transport.ErrAgentUnavailable):
		return err
	}
	g.mu.Lock()
	g.agentDead = err
	g.ready = false
	g.mu.Unlock()
	if errors.Is(err, transport.ErrStatusUnknown) && !idempotent {
		g.o.Log("vm %d: agent stopped answering after a command started; the command is not run again, later steps go over SSH", g.o.VMID)
		return err
	}
	g.o.Log("vm %d: agent stopped answering (%v); continuing over SSH", g.o.VMID, err)
	if err := g.Wait(ctx); err != nil {
		return err
	}
	if t, agent = g.current(); t == nil || agent {
		return fmt.Errorf("vm %d: no channel after the agent stopped answering", g.o.VMID)
	}
	return op(t, false)
}

// dropSSH forgets the SSH connection t after it broke (a reboot, a killed
// sshd): the next call waits for a channel again and dials anew.
func (g *Guest) dropSSH(t transport.Transport) {
	g.mu.Lock()
	if g.ssh != t {
		g.mu.Unlock()
		return // another call dropped it already
	}
	g.ssh, g.ready = nil, false
	g.mu.Unlock()
	t.Close()
	g.o.Log("vm %d: the SSH connection broke; the next step connects again", g.o.VMID)
}

// Wait waits up to Options.Timeout for the agent or SSH to answer and
// chooses the channel: the agent when it answers, SSH when only SSH does.
// Once chosen, Wait returns at once (every step calls it first; while the
// agent is the channel, that is also when a missing host key pin is tried
// again).
func (g *Guest) Wait(ctx context.Context) error {
	g.waitMu.Lock()
	defer g.waitMu.Unlock()
	g.mu.Lock()
	ready, useSSH := g.ready, g.useSSH
	g.mu.Unlock()
	if ready {
		if !useSSH {
			g.maybePin(ctx)
		}
		return nil
	}
	return g.wait(ctx)
}
