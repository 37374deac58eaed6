package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPaceLimit(t *testing.T) {
	if got := (Pace{}).Limit(200 << 20); got != 860*time.Second {
		t.Errorf("default limit of 200 MiB = %s, want 60s + 800s", got)
	}
	if got := (Pace{Floor: time.Second, MinRate: 1000}).Limit(500); got != 1500*time.Millisecond {
		t.Errorf("limit = %s", got)
	}
}

// stalling reads n bytes, then blocks until ctx ends.
type stalling struct {
	ctx context.Context
	n   int
}

func (s *stalling) Read(p []byte) (int, error) {
	if s.n == 0 {
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	k := min(len(p), s.n)
	s.n -= k
	return k, nil
}

// A hang ends the transfer Floor after the last byte, however much moved.
func TestTransferStalled(t *testing.T) {
	pace := Pace{Floor: 100 * time.Millisecond, MinRate: 1 << 10}
	tr := pace.Watch(context.Background())
	defer tr.Stop()
	_, err := io.Copy(io.Discard, tr.Reader(&stalling{ctx: tr.Context(), n: 512 << 10}))
	err = tr.Err(err)
	var slow *TooSlowError
	if !errors.As(err, &slow) || !slow.Stalled || slow.Bytes != 512<<10 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want stalled after 512 KiB", err)
	}
	if !strings.HasPrefix(err.Error(), "transfer stalled: nothing moved for 100ms, after 524288 bytes in ") {
		t.Errorf("message %q", err)
	}
}

// trickle gives 16 KiB every 50 ms (320 KiB/s) until ctx ends.
type trickle struct{ ctx context.Context }

func (r trickle) Read(p []byte) (int, error) {
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case <-time.After(50 * time.Millisecond):
	}
	return min(len(p), 16<<10), nil
}

// Bytes that keep coming, but slower than MinRate, end the transfer once
// they are behind Floor + bytes/MinRate.
func TestTransferTooSlow(t *testing.T) {
	pace := Pace{Floor: 300 * time.Millisecond, MinRate: 1 << 20}
	tr := pace.Watch(context.Background())
	defer tr.Stop()
	_, err := io.Copy(io.Discard, tr.Reader(trickle{tr.Context()}))
	err = tr.Err(err)
	var slow *TooSlowError
	if !errors.As(err, &slow) || slow.Stalled || slow.Bytes == 0 {
		t.Fatalf("err = %v, want too slow", err)
	}
	// The bytes moved earned time past the floor.
	if slow.After <= pace.Floor {
		t.Errorf("ended after %s, at the floor: the bytes moved earn time", slow.After)
	}
	if !strings.HasPrefix(err.Error(), "transfer too slow: ") || !strings.HasSuffix(err.Error(), " bytes in "+slow.After.Round(time.Millisecond).String()+", under the minimum of 1024 KiB/s after 300ms") {
		t.Errorf("message %q", err)
	}
}

func TestTransferInTimeAndCallerCancel(t *testing.T) {
	tr := Pace{Floor: time.Minute}.Watch(context.Background())
	var out bytes.Buffer
	if _, err := io.Copy(tr.Writer(&out), bytes.NewReader(make([]byte, 3<<20))); err != nil || out.Len() != 3<<20 {
		t.Fatalf("copy: %v, %d bytes", err, out.Len())
	}
	tr.Stop()
	if tr.Err(errors.New("x")).Error() != "x" {
		t.Error("a stopped transfer changed an error")
	}

	ctx, cancel := context.WithCancel(context.Background())
	tr = Pace{}.Watch(ctx)
	defer tr.Stop()
	cancel()
	if _, err := tr.Reader(strings.NewReader("x")).Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("read after the caller cancelled: %v", err)
	}
}
