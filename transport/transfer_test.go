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
	if got := (Pace{}).Limit(200 << 20); got != 260*time.Second {
		t.Errorf("default limit of 200 MiB = %s, want 60s + 200s", got)
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

func TestTransferTooSlow(t *testing.T) {
	pace := Pace{Floor: 100 * time.Millisecond, MinRate: 1 << 20}
	tr := pace.Watch(context.Background())
	defer tr.Stop()
	// 512 KiB earn half a second past the floor; then nothing moves.
	start := time.Now()
	_, err := io.Copy(io.Discard, tr.Reader(&stalling{ctx: tr.Context(), n: 512 << 10}))
	took := time.Since(start)
	err = tr.Err(err)
	var slow *TooSlowError
	if !errors.As(err, &slow) || slow.Bytes != 512<<10 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want too slow after 512 KiB", err)
	}
	if took < 600*time.Millisecond {
		t.Errorf("ended after %s: the bytes moved earn time", took)
	}
	if !strings.Contains(err.Error(), "transfer too slow: 524288 bytes in ") || !strings.Contains(err.Error(), "under the minimum of 1024 KiB/s after 100ms") {
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
