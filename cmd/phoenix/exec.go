package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// ExecCmd runs one command in a guest over whichever channel answers.
type ExecCmd struct {
	VMID    int           `arg:"" help:"The VM." predictor:"vmid"`
	Timeout time.Duration `help:"Bound for the command (the wait for the guest is bounded by agent_timeout_seconds)." default:"1h"`
	Command []string      `arg:"" passthrough:"" help:"The command and its arguments (after --); each word is quoted, so use sh -c '…' for shell syntax."`
}

// argv is the command without the "--" that ends phoenix's own flags.
func (c *ExecCmd) argv() ([]string, error) {
	argv := c.Command
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return nil, errors.New("exec: no command given (phoenix exec VMID -- CMD…)")
	}
	return argv, nil
}

func (c *ExecCmd) Run(a *App) error {
	argv, err := c.argv()
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	vm := cfg.Lookup(c.VMID)
	if vm == nil {
		return fmt.Errorf("%s: vm %d is not defined", cfg.File, c.VMID)
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	home, err := inv.Home(cfg, vm)
	if err != nil {
		return err
	}
	w := &wiring{inv: inv, hostKeys: a.HostKeys}
	nodes := w.pool()
	defer nodes.close()
	// The guest is reached through the node the VM lives on.
	n, _, err := nodes.placer().Place(a.Ctx, home, vm)
	if err != nil {
		return fmt.Errorf("vm %d: %w", vm.VMID, err)
	}
	node, err := nodes.get(a.Ctx, n)
	if err != nil {
		return err
	}
	log := func(format string, args ...any) {
		if a.Verbose > 0 {
			fmt.Fprintf(a.Stderr, "phoenix: "+format+"\n", args...)
		}
	}
	g := w.guestFor(vm, n, node, log)
	if c, ok := g.(io.Closer); ok {
		defer c.Close()
	}
	if err := g.Wait(a.Ctx); err != nil { // bounded by the VM's agent timeout
		return fmt.Errorf("vm %d: %w", vm.VMID, err)
	}
	log("vm %d: over %s", vm.VMID, g.Name())
	_, err = g.Run(a.Ctx, transport.Cmd{
		Line: transport.Command(argv...), Stdout: a.Stdout, Stderr: a.Stderr, Timeout: c.Timeout,
	})
	var ee *transport.ExitError
	if errors.As(err, &ee) {
		a.code = ee.Code // its stderr is already on ours
		return nil
	}
	if err != nil {
		return fmt.Errorf("vm %d: %w", vm.VMID, err)
	}
	return nil
}
