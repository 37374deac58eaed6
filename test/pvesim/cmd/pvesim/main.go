// Command pvesim is the simulated Proxmox node's qm and pvesh. Installed
// as /usr/sbin/qm and /usr/bin/pvesh (symlinks), it acts by the name it is
// called under; `pvesim qm ...`, `pvesim pvesh ...` and
// `pvesim hold-lock VMID SECONDS` work too.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/phoenix-hv/phoenix/test/pvesim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := pvesim.Main(ctx, os.Args[0], os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}
