// Command phoenix provisions QEMU VMs on Proxmox VE from one declarative
// file, agentless over SSH.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

func main() {
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, stop := interrupts(context.Background(), sigs, os.Stderr, os.Exit)
	code := MainContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// abortWait is how long an aborted run may take to unwind before phoenix
// exits without it.
const abortWait = 5 * time.Second

// interrupts turns SIGINT and SIGTERM into a context: the first cancels it,
// and remote commands get SIGTERM and a grace period to clean up (qm clone
// removes its half-made VM, batches their temp directories); the second
// aborts (transport.WithAbort): they get SIGKILL at once; a third, or a run
// still going abortWait after the abort, exits 130 on the spot.
func interrupts(parent context.Context, sigs <-chan os.Signal, stderr io.Writer, exit func(int)) (context.Context, func()) {
	aborting, abort := transport.WithAbort(parent)
	ctx, cancel := context.WithCancel(aborting)
	done := make(chan struct{})
	go func() {
		var late <-chan time.Time
		for n := 1; ; n++ {
			select {
			case <-done:
				return
			case <-late:
				fmt.Fprintln(stderr, "phoenix: aborted")
				exit(130)
				return
			case sig := <-sigs:
				switch n {
				case 1:
					fmt.Fprintf(stderr, "phoenix: %s: interrupting; remote commands get SIGTERM and time to clean up (press Ctrl-C again to abort at once)\n", sig)
					cancel()
				case 2:
					fmt.Fprintf(stderr, "phoenix: %s again: aborting, remote commands get SIGKILL\n", sig)
					abort()
					late = time.After(abortWait)
				default:
					fmt.Fprintln(stderr, "phoenix: aborted")
					exit(130)
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel() }
}
