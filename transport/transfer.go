package transport

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Pace is how slow a file transfer may be: n bytes may take
// Floor + n/MinRate, a deadline that grows with the size, and no byte may
// take longer than Floor to come (a hang ends after Floor, however much
// moved before). The zero Pace is DefaultFloor and DefaultMinRate; tests
// set small ones.
type Pace struct {
	Floor   time.Duration
	MinRate int64 // bytes per second
}

// The floor covers what does not depend on the size: opening an SFTP
// session or a sudo shell, a few qm round trips on a busy node, the sha256
// and rename of a big file on a slow disk. The rate is what the slowest
// channel moves with room to spare: every stage of an injection goes at the
// pace of the slowest one (the node's file feeds the guest through a pipe),
// and the agent moves 1 MiB per qm guest exec, 1.5 MiB/s on the rig and
// less on a busy node where each qm is a Perl start-up; a 10 Mbit/s WAN
// link moves 1.2 MiB/s. A 200 MiB file gets 60 s + 800 s; a hang is caught
// by the stall bound long before.
const (
	DefaultFloor   = 60 * time.Second
	DefaultMinRate = 256 << 10
)

func (p Pace) orDefault() Pace {
	if p.Floor <= 0 {
		p.Floor = DefaultFloor
	}
	if p.MinRate <= 0 {
		p.MinRate = DefaultMinRate
	}
	return p
}

// Limit is how long a transfer of n bytes may take.
func (p Pace) Limit(n int64) time.Duration {
	p = p.orDefault()
	return p.Floor + time.Duration(float64(n)/float64(p.MinRate)*float64(time.Second))
}

// Sized is a reader whose length is known before it is read (from a stat of
// its source): a transport may choose how to move it by that length. It is
// a hint; what the reader yields is what is sent.
type Sized struct {
	io.Reader
	N int64
}

// SizeOf is r's length when r is Sized, else -1.
func SizeOf(r io.Reader) int64 {
	if s, ok := r.(Sized); ok {
		return s.N
	}
	return -1
}

// TooSlowError ends a transfer that fell behind its Pace.
type TooSlowError struct {
	Bytes   int64
	After   time.Duration
	Pace    Pace
	Stalled bool // nothing moved for Pace.Floor
}

func (e *TooSlowError) Error() string {
	if e.Stalled {
		return fmt.Sprintf("transfer stalled: nothing moved for %s, after %d bytes in %s",
			e.Pace.Floor, e.Bytes, e.After.Round(time.Millisecond))
	}
	return fmt.Sprintf("transfer too slow: %d bytes in %s, under the minimum of %d KiB/s after %s",
		e.Bytes, e.After.Round(time.Millisecond), e.Pace.MinRate>>10, e.Pace.Floor)
}

// Is makes a too slow transfer a context.DeadlineExceeded too.
func (e *TooSlowError) Is(target error) bool { return target == context.DeadlineExceeded }

// Transfer watches one streamed transfer of unknown size: its context ends
// with a *TooSlowError (context.Cause) as soon as the bytes counted so far
// took longer than the Pace allows them, or none came for Pace.Floor.
// Count the bytes with Reader or Writer; Stop releases it.
type Transfer struct {
	pace     Pace
	ctx      context.Context
	cancel   context.CancelCauseFunc
	start    time.Time
	moved    atomic.Int64
	lastMove atomic.Int64 // UnixNano of the last byte counted
	mu       sync.Mutex
	timer    *time.Timer
}

// Watch starts watching a transfer made under ctx.
func (p Pace) Watch(ctx context.Context) *Transfer {
	t := &Transfer{pace: p.orDefault(), start: time.Now()}
	t.lastMove.Store(t.start.UnixNano())
	t.ctx, t.cancel = context.WithCancelCause(ctx)
	t.mu.Lock()
	t.timer = time.AfterFunc(t.pace.Floor, t.check)
	t.mu.Unlock()
	return t
}

// Context ends when the caller's does or the transfer falls behind.
func (t *Transfer) Context() context.Context { return t.ctx }

// check runs when the deadline computed at the last check has come: it
// ends the transfer, or moves the deadline by what moved since.
func (t *Transfer) check() {
	n := t.moved.Load()
	byRate := t.start.Add(t.pace.Limit(n))
	byStall := time.Unix(0, t.lastMove.Load()).Add(t.pace.Floor)
	left := time.Until(byRate)
	if stall := time.Until(byStall); stall < left {
		left = stall
	}
	if left <= 0 {
		t.cancel(&TooSlowError{Bytes: n, After: time.Since(t.start), Pace: t.pace, Stalled: byStall.Before(byRate)})
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() == nil {
		t.timer.Reset(left)
	}
}

// Err is err, or the *TooSlowError that caused it.
func (t *Transfer) Err(err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(t.ctx); cause != nil && cause != t.ctx.Err() {
		return cause
	}
	return err
}

// Stop ends the watch; Context is done afterwards.
func (t *Transfer) Stop() {
	t.mu.Lock()
	t.timer.Stop()
	t.mu.Unlock()
	t.cancel(nil)
}

// Reader counts what is read from r. It also stops reading once the
// transfer's context is done.
func (t *Transfer) Reader(r io.Reader) io.Reader { return &countedReader{t: t, r: r} }

// Writer counts what is written to w. It also stops writing once the
// transfer's context is done.
func (t *Transfer) Writer(w io.Writer) io.Writer { return &countedWriter{t: t, w: w} }

func (t *Transfer) count(n int) {
	if n > 0 {
		t.moved.Add(int64(n))
		t.lastMove.Store(time.Now().UnixNano())
	}
}

type countedReader struct {
	t *Transfer
	r io.Reader
}

func (c *countedReader) Read(p []byte) (int, error) {
	if err := c.t.ctx.Err(); err != nil {
		return 0, c.t.Err(err)
	}
	n, err := c.r.Read(p)
	c.t.count(n)
	return n, err
}

type countedWriter struct {
	t *Transfer
	w io.Writer
}

func (c *countedWriter) Write(p []byte) (int, error) {
	if err := c.t.ctx.Err(); err != nil {
		return 0, c.t.Err(err)
	}
	n, err := c.w.Write(p)
	c.t.count(n)
	return n, err
}
