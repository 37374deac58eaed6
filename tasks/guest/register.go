// Package guest holds the in-guest tasks.
package guest

import "github.com/phoenix-hv/phoenix/tasks"

// Register adds the guest task kinds to reg. (Contract stub.)
func Register(reg tasks.Registry) {}
