package bench

import (
	"context"
	"fmt"
	"testing"
)

// noop accepts a run that succeeded and changed nothing.
func noop(r run) error {
	if r.code != 0 || r.Changed != 0 || r.Failed != 0 {
		return fmt.Errorf("exit %d, changed %d, failed %d: want a no-op run", r.code, r.Changed, r.Failed)
	}
	return nil
}

// BenchmarkNoopCreate is `phoenix run playbooks/create.yml --vmid 8101` on
// the converged VM: the cost of proving nothing needs to change.
func BenchmarkNoopCreate(b *testing.B) {
	theLab(b).measure(b, firstVMs(1), noop, createArgs()...)
}

// BenchmarkNoop10 and BenchmarkNoop50 are the no-op on 10 and 50 converged
// VMs of one node, one fork per VM: they share the node's one SSH
// connection (up to sshd's MaxSessions sessions at a time).
func BenchmarkNoop10(b *testing.B) { noopMany(b, 10) }
func BenchmarkNoop50(b *testing.B) { noopMany(b, 50) }

func noopMany(b *testing.B, n int) {
	l := theLab(b)
	shared.mu.Lock()
	err := l.grow(context.Background(), n)
	shared.mu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	ids := firstVMs(n)
	l.measure(b, ids, noop, noopArgs(ids)...)
}

// BenchmarkNoopCreateLatency is the same with every qm/pvesh call 300 ms
// slower, qm's Perl start-up cost on a real node: batching shows here.
func BenchmarkNoopCreateLatency(b *testing.B) {
	l := theLab(b)
	ctx := context.Background()
	if err := l.rig.SetLatency(ctx, 300); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.rig.SetLatency(context.Background(), 0); err != nil {
			b.Errorf("latency off: %v", err)
		}
	})
	l.measure(b, firstVMs(1), noop, createArgs()...)
}

// BenchmarkPlan is `--dry-run --diff` on the converged VM: with
// --detailed-exitcode, 0 means nothing is pending.
func BenchmarkPlan(b *testing.B) {
	theLab(b).measure(b, firstVMs(1), noop, createArgs("--dry-run", "--diff", "--detailed-exitcode")...)
}
