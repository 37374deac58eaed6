package pvesim

import (
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain lets this test binary be a stand-in: started as kvm, it waits
// for SIGTERM (the real one waits for its container too).
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "kvm" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		select {
		case <-sig:
		case <-time.After(time.Minute):
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A stand-in is what Proxmox's running check accepts (kvm, -pidfile, not a
// zombie) until Stop ends it; Stop leaves alone a pid that is not the
// stand-in of that pid file.
func TestNodeProcs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := nodeProcs{exe: exe}
	pidfile := filepath.Join(t.TempDir(), "8101.pid")
	h := newHarness(t)
	argv := (&call{Sim: h.sim}).kvmArgs(8101, map[string]string{"name": "web01", "agent": "1"})
	argv[len(argv)-2] = pidfile
	pid, err := p.Spawn(argv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	for i := 0; !isStandIn(pid, pidfile); i++ {
		if i == 100 {
			t.Fatalf("pid %d is not seen as the stand-in of %s", pid, pidfile)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if isStandIn(pid, pidfile+".other") || isStandIn(os.Getpid(), pidfile) {
		t.Error("isStandIn accepts another pid file or another program")
	}
	if err := p.Stop(os.Getpid(), pidfile); err != nil {
		t.Errorf("Stop of a pid that is not the stand-in: %v", err)
	}
	if err := p.Stop(pid, pidfile); err != nil {
		t.Fatal(err)
	}
	if isStandIn(pid, pidfile) {
		t.Errorf("stand-in %d still runs after Stop", pid)
	}
	if raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		t.Logf("after Stop: %s (a zombie until its parent reaps it counts as stopped)", raw)
	}
}
