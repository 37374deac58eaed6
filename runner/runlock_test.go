package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport/local"
)

// The holder runs for real here (bash and flock on this machine, in a temp
// directory instead of /run/lock/phoenix).
func TestRunLocksKeepASecondRunOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	alice, bob := newRunLocks(local.Shell{}, "pve1", dir), newRunLocks(local.Shell{}, "pve1", dir)
	defer alice.close()
	defer bob.close()
	if err := alice.lock(ctx, 8101, "alice@laptop pid 1 since 2026-12-01T10:00:00Z"); err != nil {
		t.Fatal(err)
	}
	err := bob.lock(ctx, 8101, "bob@ci pid 2 since 2026-12-01T10:00:01Z")
	if err == nil || err.Error() != "another phoenix run is working on this VM (alice@laptop pid 1 since 2026-12-01T10:00:00Z); wait for it to end" {
		t.Fatalf("second lock: %v", err)
	}
	if err := bob.lock(ctx, 8102, "bob"); err != nil {
		t.Fatalf("another VM: %v", err)
	}
	alice.unlock(8101)
	if err := bob.lock(ctx, 8101, "bob"); err != nil {
		t.Fatalf("after the unlock: %v", err)
	}
	// Ending the holder (the run's end, a dropped connection) releases all.
	bob.close()
	carol := newRunLocks(local.Shell{}, "pve1", dir)
	defer carol.close()
	for _, id := range []int{8101, 8102} {
		if err := carol.lock(ctx, id, "carol"); err != nil {
			t.Errorf("vm %d after the holder ended: %v", id, err)
		}
	}
}

func TestRunLockHolderFailureIsClear(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A lock directory that cannot be made: the holder exits 125.
	l := newRunLocks(local.Shell{}, "pve1", "/proc/phoenix-no-such-dir")
	defer l.close()
	err := l.lock(ctx, 8101, "x")
	if err == nil || !strings.Contains(err.Error(), "run lock on node pve1: the lock holder stopped") {
		t.Errorf("err = %v", err)
	}
}

func TestLockOwner(t *testing.T) {
	got := lockOwner(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	if !strings.Contains(got, " pid ") || !strings.HasSuffix(got, " since 2026-12-01T10:00:00Z") || strings.ContainsAny(got, "\n\t") {
		t.Errorf("owner %q", got)
	}
}
