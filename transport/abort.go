package transport

import (
	"context"
	"sync"
)

// A command whose context ends is asked to stop (SIGTERM) and given a grace
// period to clean up: `qm clone` then removes its half-made VM instead of
// leaving it locked. A person who presses Ctrl-C a second time does not want
// to wait for that: WithAbort lets the caller cut the grace short.

type abortKey struct{}

// WithAbort returns a context carrying an abort switch, and the function
// that throws it. Transports read it with Aborted; cancelling the context
// is a separate matter (the first Ctrl-C cancels, the second aborts).
func WithAbort(parent context.Context) (ctx context.Context, abort func()) {
	ch := make(chan struct{})
	return context.WithValue(parent, abortKey{}, (<-chan struct{})(ch)), sync.OnceFunc(func() { close(ch) })
}

// Aborted is closed once the abort of ctx was thrown; nil (never ready) for
// a context without one.
func Aborted(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(abortKey{}).(<-chan struct{})
	return ch
}
