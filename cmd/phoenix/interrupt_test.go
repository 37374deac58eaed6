package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// syncBuffer is a bytes.Buffer safe for the signal goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// The first Ctrl-C cancels (graceful), the second aborts (SIGKILL to remote
// commands), the third exits 130 at once.
func TestInterruptsFirstCancelsSecondAbortsThirdExits(t *testing.T) {
	sigs := make(chan os.Signal)
	exited := make(chan int, 1)
	var stderr syncBuffer
	ctx, stop := interrupts(context.Background(), sigs, &stderr, func(code int) { exited <- code })
	defer stop()
	if ctx.Err() != nil || closed(transport.Aborted(ctx)) {
		t.Fatal("cancelled or aborted before any signal")
	}
	sigs <- syscall.SIGINT
	<-ctx.Done()
	if closed(transport.Aborted(ctx)) {
		t.Error("the first signal aborted")
	}
	sigs <- syscall.SIGINT
	select {
	case <-transport.Aborted(ctx):
	case <-time.After(time.Minute):
		t.Fatal("the second signal did not abort")
	}
	sigs <- syscall.SIGTERM
	select {
	case code := <-exited:
		if code != 130 {
			t.Errorf("exit %d, want 130", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("the third signal did not exit")
	}
	for _, want := range []string{"interrupting", "press Ctrl-C again to abort", "aborting, remote commands get SIGKILL", "phoenix: aborted"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// A run whose context is cancelled says "interrupted" as its last word, in
// text and JSON, and exits 130.
func TestInterruptedRunExits130(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, output := range []string{"text", "json"} {
		var out, errb bytes.Buffer
		code := MainContext(ctx, append(files(t, testConfig), "--output", output, "create", "8101"), &out, &errb)
		if code != 130 {
			t.Errorf("%s: exit %d, want 130\n%s%s", output, code, out.String(), errb.String())
		}
		if got := errb.String(); got != "phoenix: interrupted\n" {
			t.Errorf("%s: stderr %q, want the one word", output, got)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		last := lines[len(lines)-1]
		if output == "text" {
			if !strings.HasPrefix(last, "total: ") || !strings.Contains(last, "; interrupted") {
				t.Errorf("text: last line %q", last)
			}
			continue
		}
		var sum struct {
			Event       string `json:"event"`
			Interrupted bool   `json:"interrupted"`
		}
		if err := json.Unmarshal([]byte(last), &sum); err != nil || sum.Event != "summary" || !sum.Interrupted {
			t.Errorf("json: last line %s (%v)", last, err)
		}
		if !strings.Contains(out.String(), "interrupted before it started") {
			t.Errorf("%s: the VM does not say it was interrupted:\n%s", output, out.String())
		}
	}
}

// Any verb stopped by Ctrl-C exits 130, not only a run.
func TestInterruptedExecExits130(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	if code := MainContext(ctx, append(files(t, testConfig), "exec", "8101", "--", "true"), &out, &errb); code != 130 {
		t.Errorf("exit %d, want 130: %s", code, errb.String())
	}
}
