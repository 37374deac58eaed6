package ssh

import (
	"context"
	"errors"
)

// Client is an open SSH connection. (Contract stub: replaced by the transport.)
type Client struct{}

// Dial connects and authenticates, checking the host key.
func Dial(ctx context.Context, o Options) (*Client, error) { return nil, errors.New("not implemented") }
