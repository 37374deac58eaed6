package fallback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

const (
	// agentProbeTimeout bounds one ping: qm waits 3 s for guest-ping, the
	// rest is the round trip to the node.
	agentProbeTimeout = 20 * time.Second
	// sshProbeTimeout bounds one dial (the SSH transport's own connect
	// timeout is 15 s by default).
	sshProbeTimeout = 30 * time.Second
)

var (
	errNotConfigured = errors.New("not configured")
	errNoAnswer      = errors.New("no answer")
)

// notConfigured reports an agent that cannot answer before the VM is
// restarted with agent enabled.
func notConfigured(err error) bool {
	return errors.Is(err, errNotConfigured) || strings.Contains(err.Error(), "No QEMU guest agent configured")
}

// pinger is what the agent transport offers to probe it cheaply.
type pinger interface {
	Ping(ctx context.Context) error
}

// probe is one answer from one channel.
type probe struct {
	agent bool
	t     transport.Transport // the SSH connection, when SSH answered
	err   error
}

// wait probes the agent and SSH concurrently until one answers, up to
// Options.Timeout (SSH after the agent's head start, see below). The agent wins when it answers; SSH wins once it is
// connected and the agent has failed at least one probe. It gives up early
// when neither channel can ever answer (agent not configured and SSH host
// key changed, say).
func (g *Guest) wait(ctx context.Context) error {
	g.mu.Lock()
	agentErr, conn := g.agentDead, g.ssh
	g.mu.Unlock()
	agentFinal := agentErr != nil // given up after it stopped answering
	if g.o.Agent == nil {
		agentErr, agentFinal = errNotConfigured, true
	}
	var sshErr error
	if g.o.DialSSH == nil {
		sshErr = errNotConfigured
	}
	if agentFinal && conn != nil {
		g.choose(true, agentErr, conn)
		return nil
	}
	probeAgent, probeSSH := !agentFinal, sshErr == nil && conn == nil
	if !probeAgent && !probeSSH {
		return g.unreachable(0, agentErr, sshErr)
	}
	if agentErr == nil {
		agentErr = errNoAnswer
	}
	if sshErr == nil {
		sshErr = errNoAnswer
	}

	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
	defer cancel()
	pctx, stop := context.WithCancel(wctx)
	results := make(chan probe)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	loop := func(agent bool) {
		wg.Add(1)
		go func() { defer wg.Done(); g.probeLoop(pctx, agent, results) }()
	}
	// The agent gets one probe interval's head start: when it answers in
	// time (the usual case), no SSH connection is opened only to be dropped.
	// SSH starts at once when the agent's first probe fails.
	var headStart <-chan time.Time
	startSSH := func() {
		if probeSSH {
			probeSSH, headStart = false, nil
			loop(false)
		}
	}
	if probeAgent {
		loop(true)
		t := time.NewTimer(g.o.ProbeInterval)
		defer t.Stop()
		headStart = t.C
	} else {
		startSSH()
	}
	for {
		select {
		case <-headStart:
			startSSH()
		case p := <-results:
			switch {
			case p.agent && p.err == nil:
				g.choose(false, nil, conn)
				g.maybePin(ctx)
				return nil
			case p.agent:
				agentErr, agentFinal = p.err, notConfigured(p.err)
				startSSH()
			case p.err == nil:
				conn = p.t
				g.mu.Lock()
				g.ssh = conn
				g.mu.Unlock()
			default:
				sshErr = p.err
				if errors.Is(p.err, transport.ErrHostKeyChanged) {
					// Never retried, never passed over in silence.
					g.o.Log("vm %d: %v", g.o.VMID, p.err)
				}
			}
			if conn != nil && agentErr != errNoAnswer {
				g.choose(true, agentErr, conn)
				return nil
			}
			sshFinal := errors.Is(sshErr, errNotConfigured) || errors.Is(sshErr, transport.ErrHostKeyChanged) ||
				agentFinal && errors.Is(sshErr, transport.ErrHostKeyUnknown) // nothing can pin it now
			if conn == nil && agentFinal && sshFinal {
				return g.unreachable(0, agentErr, sshErr)
			}
		case <-wctx.Done():
			// A caller's deadline that ends with ours still owes the person
			// what was tried; only a cancellation (Ctrl-C) says just that.
			if errors.Is(ctx.Err(), context.Canceled) {
				return fmt.Errorf("vm %d: wait for the guest: %w", g.o.VMID, ctx.Err())
			}
			if conn != nil {
				// The agent's probe is still out; SSH is here.
				g.choose(true, agentErr, conn)
				return nil
			}
			err := g.unreachable(g.o.Timeout, agentErr, sshErr)
			if cause := ctx.Err(); cause != nil {
				err.After, err.Cause = round(time.Since(start)), cause
			}
			return err
		}
	}
}

// choose makes the agent (useSSH false) or conn the channel.
func (g *Guest) choose(useSSH bool, agentErr error, conn transport.Transport) {
	g.mu.Lock()
	g.ready, g.useSSH = true, useSSH
	g.mu.Unlock()
	if useSSH {
		g.o.Log("vm %d: agent: %v; steps run over %s", g.o.VMID, agentErr, conn.Name())
	} else {
		g.o.Log("vm %d: the guest agent answers; steps run through %s", g.o.VMID, g.o.Agent.Name())
	}
}

// probeLoop probes one channel every ProbeInterval and reports each answer
// until one succeeds, the channel can never answer, or ctx ends.
func (g *Guest) probeLoop(ctx context.Context, agent bool, out chan<- probe) {
	for {
		next := time.NewTimer(g.o.ProbeInterval)
		p := g.probeOnce(ctx, agent)
		if ctx.Err() == nil {
			select {
			case out <- p:
				p.t = nil // delivered: the connection is the Guest's now
			case <-ctx.Done():
			}
		}
		if p.t != nil {
			p.t.Close() // dialed too late to be used
		}
		final := p.err == nil || errors.Is(p.err, transport.ErrHostKeyChanged) || notConfigured(p.err)
		if ctx.Err() != nil || final {
			next.Stop()
			return
		}
		select {
		case <-next.C:
		case <-ctx.Done():
			next.Stop()
			return
		}
	}
}

func (g *Guest) probeOnce(ctx context.Context, agent bool) probe {
	if agent {
		ctx, cancel := context.WithTimeout(ctx, agentProbeTimeout)
		defer cancel()
		if p, ok := g.o.Agent.(pinger); ok {
			return probe{agent: true, err: p.Ping(ctx)}
		}
		_, err := g.o.Agent.Run(ctx, transport.Cmd{Line: "true"})
		return probe{agent: true, err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, sshProbeTimeout)
	defer cancel()
	t, err := g.o.DialSSH(ctx)
	if err != nil {
		return probe{err: err}
	}
	if g.o.SSHUser != "" && g.o.SSHUser != "root" {
		t = Sudo{T: t, Rand: g.o.Rand}
	}
	return probe{t: t}
}

// UnreachableError is a guest that answered on no channel: it says what
// was tried and what each channel said.
type UnreachableError struct {
	VMID  int
	After time.Duration // how long it waited; 0 when it gave up early
	Agent error
	SSH   error
	Cause error // the caller's context error when its deadline ended the wait
}

func (e *UnreachableError) Error() string {
	// No "vm N:" here: every caller (runner step, phoenix exec) names the VM.
	msg := "guest unreachable"
	if e.After > 0 {
		msg += " after " + seconds(e.After)
	}
	ssh := e.SSH.Error()
	if !strings.HasPrefix(ssh, "ssh ") { // the SSH transport names itself
		ssh = "ssh: " + ssh
	}
	return msg + ": agent: " + e.Agent.Error() + "; " + ssh
}

// Unwrap lets callers test for transport.ErrUnreachable and for what each
// channel said (transport.ErrHostKeyChanged, ErrAgentUnavailable, …).
func (e *UnreachableError) Unwrap() []error {
	errs := []error{transport.ErrUnreachable, e.Agent, e.SSH}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

func (g *Guest) unreachable(after time.Duration, agentErr, sshErr error) *UnreachableError {
	return &UnreachableError{VMID: g.o.VMID, After: after, Agent: agentErr, SSH: sshErr}
}

// round keeps a waited time readable: whole seconds, or milliseconds below
// one second.
func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int(d/time.Second))
	}
	return d.String()
}
