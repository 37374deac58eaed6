package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/placement"
	"github.com/phoenix-hv/phoenix/runner"
	"github.com/phoenix-hv/phoenix/tasks/pve"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/agent"
	"github.com/phoenix-hv/phoenix/transport/fallback"
	"github.com/phoenix-hv/phoenix/transport/ssh"
)

// wiring builds the real transports from the inventory: SSH to the nodes
// (through their jump hosts), and for guests the agent through the node
// with SSH as the fallback.
type wiring struct {
	inv      *inventory.Inventory
	hostKeys string // --host-keys
}

// nodeClient is a node connection and the jump hosts it goes through.
type nodeClient struct {
	*ssh.Client
	via []*ssh.Client // outermost first
}

func (c *nodeClient) Close() error { return errors.Join(c.Client.Close(), closeAll(c.via)) }

// closeAll closes jump hosts innermost first.
func closeAll(via []*ssh.Client) error {
	var errs []error
	for i := len(via) - 1; i >= 0; i-- {
		errs = append(errs, via[i].Close())
	}
	return errors.Join(errs...)
}

// connectNode is runner.Options.Connect.
func (w *wiring) connectNode(ctx context.Context, n *inventory.Node) (transport.Transport, error) {
	c, err := w.dialNode(ctx, n)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// dialNode dials n, first dialling its jump hosts in turn.
func (w *wiring) dialNode(ctx context.Context, n *inventory.Node) (*nodeClient, error) {
	var via []*ssh.Client
	if n.Jump != nil {
		j, err := w.dialNode(ctx, n.Jump)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", n.Jump.Name, err)
		}
		via = append(j.via, j.Client)
	}
	o := ssh.Options{
		Host: n.Address, Port: n.Port, User: n.User,
		KnownHosts: w.inv.KnownHosts, Policy: ssh.HostKeyPolicy(w.hostKeys),
	}
	if n.IdentityFile != "" {
		o.IdentityFiles = []string{n.IdentityFile}
	}
	if len(via) > 0 {
		o.Jump = via[len(via)-1]
	}
	c, err := ssh.Dial(ctx, o)
	if err != nil {
		closeAll(via)
		return nil, err
	}
	return &nodeClient{Client: c, via: via}, nil
}

// guestFor is runner.Options.GuestFor: the agent through the node first
// (its socket, qm guest where the socket helper cannot run), SSH to the
// guest (pinned host key only) when the agent does not answer.
func (w *wiring) guestFor(vm *inventory.VM, n *inventory.Node, node transport.Transport, log func(string, ...any)) runner.Guest {
	pveNode := "localhost"
	if n.PVENode != "" {
		pveNode = n.PVENode
	}
	o := fallback.Options{
		VMID:       vm.VMID,
		Agent:      agent.NewWithSocket(node, pveNode, vm.VMID),
		Timeout:    vm.AgentTimeout(),
		Log:        log,
		KnownHosts: w.inv.GuestKnownHosts,
	}
	access, err := w.inv.GuestFor(vm)
	if err != nil {
		// No address to try: the fallback reports why when the agent is down.
		o.DialSSH = func(context.Context) (transport.Transport, error) { return nil, err }
		return fallback.New(o)
	}
	o.SSHUser = access.User
	o.DialSSH = func(ctx context.Context) (transport.Transport, error) {
		so := ssh.Options{
			Host: access.Address, Port: access.Port, User: access.User,
			KnownHosts: w.inv.GuestKnownHosts, Policy: ssh.Strict,
			HostKeyAlias: ssh.GuestHostKeyAlias(vm.VMID),
		}
		if access.IdentityFile != "" {
			so.IdentityFiles = []string{access.IdentityFile}
		}
		if access.Via == "jump" {
			nc, ok := nodeClientOf(node)
			if !ok {
				return nil, fmt.Errorf("guest ssh via jump: the node connection is %s, not SSH", node.Name())
			}
			so.Jump = nc.Client
		}
		return ssh.Dial(ctx, so)
	}
	return fallback.New(o)
}

// nodeClientOf finds the SSH node connection under the runner's wrapping.
func nodeClientOf(t transport.Transport) (*nodeClient, bool) {
	for {
		if nc, ok := t.(*nodeClient); ok {
			return nc, true
		}
		u, ok := t.(interface{ Unwrap() transport.Transport })
		if !ok {
			return nil, false
		}
		t = u.Unwrap()
	}
}

// pool opens each node once for a verb that does not run a playbook
// (status, exec) and closes them all at the end.
type pool struct {
	w     *wiring
	conns transport.Pool
}

func (w *wiring) pool() *pool { return &pool{w: w} }

func (p *pool) get(ctx context.Context, n *inventory.Node) (transport.Transport, error) {
	return p.conns.Get(n.Name, func() (transport.Transport, error) {
		t, err := p.w.connectNode(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		return t, nil
	})
}

func (p *pool) close() { p.conns.Close() }

// placer finds where VMs live over the pool's connections.
func (p *pool) placer() *placement.Placer {
	return placement.New(p.w.inv, pve.ReadCluster, p.get)
}
