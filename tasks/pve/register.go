// Package pve holds the Proxmox node side of phoenix: qm output parsers, the
// VM state read once per run, and the node tasks.
package pve

import "github.com/phoenix-hv/phoenix/tasks"

// Register adds the node task kinds to reg. (Contract stub.)
func Register(reg tasks.Registry) {}
