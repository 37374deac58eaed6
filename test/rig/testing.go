package rig

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dc "github.com/ory/dockertest/v3/docker"
)

// New starts a rig with template 9000 built for a test and removes it when
// the test ends, also when it fails or the test binary is interrupted.
// Without Docker the test fails (it never skips: an integration test that
// did not run did not pass).
func New(t testing.TB) *Rig {
	t.Helper()
	return start(t, Options{Log: t.Logf})
}

// NewBare is New with a bare node: no VMs (Options.BareNode).
func NewBare(t testing.TB) *Rig {
	t.Helper()
	return start(t, Options{Log: t.Logf, BareNode: true})
}

// NewCluster is NewBare with a cluster of nodes (2 or 3) instead of one
// node (Options.Nodes).
func NewCluster(t testing.TB, nodes int) *Rig {
	t.Helper()
	return start(t, Options{Log: t.Logf, BareNode: true, Nodes: nodes})
}

func start(t testing.TB, o Options) *Rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	r, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("start rig: %v", err)
	}
	// An interrupt or kill (Ctrl-C, SIGTERM) skips t.Cleanup: remove the rig
	// first, then die as the signal would have made us. A binary that dies
	// without a signal to catch (go test -timeout panics) leaves its rig to
	// the orphan reaping of the next Start, and the node to MaxLifetime.
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sig:
			_ = r.Close()
			fmt.Fprintf(os.Stderr, "rig %s removed after %v\n", r.ID, s)
			os.Exit(130)
		case <-done:
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sig)
		close(done)
		if t.Failed() {
			r.logState(t)
		}
		if err := r.Close(); err != nil {
			t.Errorf("remove rig %s: %v", r.ID, err)
		}
	})
	return r
}

// logState puts what a person needs to see why a test failed into the test
// log: the node's and every guest's logs.
func (r *Rig) logState(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := r.pool.Client.ListContainers(dc.ListContainersOptions{All: true, Filters: map[string][]string{"name": {"phoenix-rig-" + r.ID + "-"}}, Context: ctx})
	if err != nil {
		t.Logf("rig %s: list containers: %v", r.ID, err)
		return
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Names[0] < cs[j].Names[0] })
	for _, c := range cs {
		var out strings.Builder
		err := r.pool.Client.Logs(dc.LogsOptions{Context: ctx, Container: c.ID, OutputStream: &out, ErrorStream: &out, Stdout: true, Stderr: true, Tail: "60"})
		if err != nil {
			t.Logf("rig: logs of %s: %v", c.Names[0], err)
			continue
		}
		t.Logf("rig: %s (%s), last log lines:\n%s", strings.TrimPrefix(c.Names[0], "/"), c.Status, out.String())
	}
}
