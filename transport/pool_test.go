package transport_test

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

// closeCounter is a transport that counts its Close calls.
type closeCounter struct {
	local.Shell
	closed *atomic.Int32
}

func (c closeCounter) Close() error { c.closed.Add(1); return nil }

func TestPoolDialsEachNameOnce(t *testing.T) {
	var p transport.Pool
	var dials, closed atomic.Int32
	refused := errors.New("refused")
	dial := func(name string) func() (transport.Transport, error) {
		return func() (transport.Transport, error) {
			dials.Add(1)
			if name == "down" {
				return nil, refused
			}
			return closeCounter{closed: &closed}, nil
		}
	}
	var wg sync.WaitGroup
	for range 10 {
		for _, name := range []string{"pve1", "pve2", "down"} {
			wg.Go(func() {
				tr, err := p.Get(name, dial(name))
				if name == "down" && !errors.Is(err, refused) || name != "down" && (err != nil || tr == nil) {
					t.Errorf("Get(%s) = %v, %v", name, tr, err)
				}
			})
		}
	}
	wg.Wait()
	if dials.Load() != 3 {
		t.Errorf("dialled %d times, want once per name", dials.Load())
	}
	if got := p.Failed(); !slices.Equal(got, []string{"down"}) {
		t.Errorf("Failed() = %q", got)
	}
	if err := p.Close(); err != nil || closed.Load() != 2 {
		t.Errorf("Close: %v, closed %d connections, want the 2 open ones", err, closed.Load())
	}
}
