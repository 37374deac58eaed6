package transport

import (
	"maps"
	"slices"
	"sync"
)

// Pool keeps one connection per name (a node), opened on first use and
// kept until Close: a run talks to each node over one connection. A name
// that could not be opened is not tried again; its error is returned to
// every caller.
type Pool struct {
	mu   sync.Mutex
	open map[string]*pooled
}

type pooled struct {
	once sync.Once
	t    Transport
	err  error
}

// Get returns name's connection, opening it with dial the first time.
func (p *Pool) Get(name string, dial func() (Transport, error)) (Transport, error) {
	p.mu.Lock()
	if p.open == nil {
		p.open = map[string]*pooled{}
	}
	c := p.open[name]
	if c == nil {
		c = &pooled{}
		p.open[name] = c
	}
	p.mu.Unlock()
	c.once.Do(func() { c.t, c.err = dial() })
	return c.t, c.err
}

// Failed lists, sorted, the names whose connection could not be opened.
func (p *Pool) Failed() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, name := range slices.Sorted(maps.Keys(p.open)) {
		if p.open[name].err != nil {
			out = append(out, name)
		}
	}
	return out
}

// Close closes every open connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first error
	for _, c := range p.open {
		if c.t != nil {
			if err := c.t.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}
