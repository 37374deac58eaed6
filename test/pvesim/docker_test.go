package pvesim

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ory/dockertest/v3/docker"
)

// TestDockerBackend drives the real backend against this machine's Docker
// engine with a tiny image it builds itself (no registry needed). Without
// an engine it fails, like every test of the rig: a test that did not run
// did not pass.
func TestDockerBackend(t *testing.T) {
	d, err := NewDocker(false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.Client.PingWithContext(ctx); err != nil {
		t.Fatalf("docker ping (this test needs a running Docker engine; .ci/run starts one): %v", err)
	}
	image := buildInitImage(t, d.Client)
	netName, prefix := createTestNetwork(t, d.Client)
	seed := t.TempDir()

	name := fmt.Sprintf("pvesim-test-%d-vm-8101", os.Getpid())
	t.Cleanup(func() { d.Remove(context.Background(), name) })
	g := Guest{
		Name: name, Image: image, Hostname: "web01", Network: netName, IP: prefix + ".10", MAC: "bc:24:11:12:34:56",
		Binds:  []string{seed + ":/var/lib/cloud/seed/nocloud"},
		Env:    []string{"VMID=8101", "PHOENIX_FAULT_SSH_OFF=1"},
		Labels: map[string]string{"pvesim.vmid": "8101"},
	}
	if err := d.Start(ctx, g); err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err := d.State(ctx, name)
	if err != nil || !st.Running || st.PID <= 0 || st.StartedAt.IsZero() {
		t.Fatalf("state after start: %+v, %v", st, err)
	}
	ct, err := d.Client.InspectContainerWithContext(name, ctx)
	if err != nil {
		t.Fatal(err)
	}
	firstID := ct.ID
	ep := ct.NetworkSettings.Networks[netName]
	if ep.IPAddress != g.IP || !strings.EqualFold(ep.MacAddress, g.MAC) {
		t.Errorf("endpoint on %s: ip %q mac %q, want %s %s", netName, ep.IPAddress, ep.MacAddress, g.IP, g.MAC)
	}
	mayMount := ct.HostConfig.Privileged || contains(ct.HostConfig.CapAdd, "SYS_ADMIN")
	if !mayMount || ct.Config.Hostname != "web01" || !contains(ct.Config.Env, "PHOENIX_FAULT_SSH_OFF=1") ||
		!contains(ct.HostConfig.Binds, g.Binds[0]) || ct.Config.Labels["pvesim.vmid"] != "8101" {
		t.Errorf("container config: privileged %v caps %v hostname %q env %v binds %v labels %v",
			ct.HostConfig.Privileged, ct.HostConfig.CapAdd, ct.Config.Hostname, ct.Config.Env, ct.HostConfig.Binds, ct.Config.Labels)
	}

	// Graceful shutdown, then the same container starts again.
	waitReady(t, d, name)
	if err := d.Shutdown(ctx, name, 10*time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if st, _ := d.State(ctx, name); st.Running {
		t.Fatal("still running after shutdown")
	}
	if err := d.Start(ctx, g); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if ct, err := d.Client.InspectContainerWithContext(name, ctx); err != nil || ct.ID != firstID || !ct.State.Running {
		t.Fatalf("restart made a new container or did not start it: %v", err)
	}
	if err := d.Start(ctx, g); err != nil {
		t.Fatalf("start of a running guest: %v", err)
	}

	// A changed spec (here a fault switch that ignores SIGTERM) recreates it.
	g.Env = append(g.Env, "IGNORE_TERM=1")
	if err := d.Start(ctx, g); err != nil {
		t.Fatalf("start with new spec: %v", err)
	}
	ct, err = d.Client.InspectContainerWithContext(name, ctx)
	if err != nil || ct.ID == firstID || !ct.State.Running {
		t.Fatalf("new spec kept the old container: %v", err)
	}
	waitReady(t, d, name)
	if err := d.Shutdown(ctx, name, time.Second); !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("shutdown of a guest ignoring SIGTERM: %v, want ErrShutdownTimeout", err)
	}
	if st, _ := d.State(ctx, name); !st.Running {
		t.Fatal("a timed-out shutdown must leave the guest running")
	}
	if err := d.Kill(ctx, name); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if st, _ := d.State(ctx, name); st.Running {
		t.Fatal("still running after kill")
	}
	if err := d.Kill(ctx, name); err != nil {
		t.Fatalf("kill of a stopped guest: %v", err)
	}
	if err := d.Remove(ctx, name); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if st, err := d.State(ctx, name); err != nil || st.Running {
		t.Fatalf("state of a removed guest: %+v, %v", st, err)
	}
	if err := d.Remove(ctx, name); err != nil {
		t.Fatalf("remove of a missing guest: %v", err)
	}

	// DHCP-style: no fixed address, Docker assigns one.
	g.IP = ""
	if err := d.Start(ctx, g); err != nil {
		t.Fatalf("start without fixed IP: %v", err)
	}
	if ct, err := d.Client.InspectContainerWithContext(name, ctx); err != nil || !strings.HasPrefix(ct.NetworkSettings.Networks[netName].IPAddress, prefix+".") {
		t.Fatalf("dhcp-style address: %v", err)
	}
}

// waitReady waits for guestinit's "ready": before it, PID 1 has no SIGTERM
// disposition and the kernel drops the signal.
func waitReady(t *testing.T, d *Docker, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var out bytes.Buffer
		err := d.Client.Logs(docker.LogsOptions{Container: name, Stdout: true, OutputStream: &out, ErrorStream: io.Discard})
		if err == nil && strings.Contains(out.String(), "ready") {
			return
		}
	}
	t.Fatalf("%s: guestinit did not say ready in 30s", name)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// buildInitImage builds FROM scratch + testdata/guestinit.
func buildInitImage(t *testing.T, cl *docker.Client) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", bin, "./testdata/guestinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build guestinit: %v\n%s", err, out)
	}
	initBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY init /init\nENTRYPOINT [\"/init\"]\n")}, {"init", 0o755, initBin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	name := fmt.Sprintf("pvesim-test-init:%d", os.Getpid())
	if err := cl.BuildImage(docker.BuildImageOptions{Name: name, InputStream: &ctxTar, OutputStream: io.Discard, RmTmpContainer: true}); err != nil {
		t.Fatalf("build image: %v", err)
	}
	t.Cleanup(func() { cl.RemoveImage(name) })
	return name
}

// createTestNetwork makes a user network with a fixed /24 like the rig's.
func createTestNetwork(t *testing.T, cl *docker.Client) (name, prefix string) {
	t.Helper()
	name = fmt.Sprintf("pvesim-test-%d", os.Getpid())
	var lastErr error
	for i := 0; i < 20; i++ {
		prefix = fmt.Sprintf("10.%d.%d", 200+(os.Getpid()+i)%50, (os.Getpid()/50+i)%250)
		nw, err := cl.CreateNetwork(docker.CreateNetworkOptions{
			Name: name, Driver: "bridge",
			IPAM: &docker.IPAMOptions{Config: []docker.IPAMConfig{{Subnet: prefix + ".0/24", Gateway: prefix + ".1"}}},
		})
		if err == nil {
			t.Cleanup(func() { cl.RemoveNetwork(nw.ID) })
			return name, prefix
		}
		lastErr = err
	}
	t.Fatalf("create network: %v", lastErr)
	return "", ""
}
