package pvesim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// buildGuestInit builds testdata/guestinit as a static binary.
func buildGuestInit(t *testing.T) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "init")
	build := exec.Command("go", "build", "-o", bin, "./testdata/guestinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build guestinit: %v\n%s", err, out)
	}
	initBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return initBin
}

// buildInitImage builds FROM scratch + testdata/guestinit.
func buildInitImage(t *testing.T, cl *docker.Client) string {
	t.Helper()
	initBin := buildGuestInit(t)
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

// TestDockerDisks drives the disk side of the backend: a disk imported
// from a file boots, keeps what the guest wrote when its container is made
// anew, and is stored with those writes by CommitDisk.
func TestDockerDisks(t *testing.T) {
	d, err := NewDocker(false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := d.Client.PingWithContext(ctx); err != nil {
		t.Fatalf("docker ping (this test needs a running Docker engine; .ci/run starts one): %v", err)
	}
	initBin := buildGuestInit(t)
	var img bytes.Buffer
	zw := gzip.NewWriter(&img)
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"usr/bin/tini", 0o755, initBin}, {"etc/disk-marker", 0o644, []byte("from the image file\n")}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	zw.Close()
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(path, img.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if info, err := inspectImage(path); err != nil || !info.bootable() {
		t.Fatalf("inspectImage: %+v, %v", info, err)
	}
	sum := sha256.Sum256(img.Bytes())
	refs := []string{importCacheRef(hex.EncodeToString(sum[:]))}
	ref := func(n string) string {
		r := fmt.Sprintf("pvesim-test-%d-disk:%s", os.Getpid(), n)
		refs = append(refs, r)
		return r
	}
	name := fmt.Sprintf("pvesim-test-%d-vm-9000", os.Getpid())
	t.Cleanup(func() {
		d.Remove(context.Background(), name)
		for _, r := range refs {
			d.RemoveDisk(context.Background(), r)
		}
	})
	disk, copied, stored := ref("vm-9000-disk-0"), ref("copy"), ref("stored")

	if err := d.ImportDisk(ctx, disk, path); err != nil {
		t.Fatalf("import: %v", err)
	}
	if ok, err := d.HasDisk(ctx, disk); err != nil || !ok {
		t.Fatalf("HasDisk after import: %v, %v", ok, err)
	}
	if ok, err := d.CopyDisk(ctx, disk, copied); err != nil || !ok {
		t.Fatalf("CopyDisk: %v, %v", ok, err)
	}
	if ok, err := d.CopyDisk(ctx, ref("missing"), ref("nothing")); err != nil || ok {
		t.Fatalf("CopyDisk of a missing disk: %v, %v", ok, err)
	}

	g := Guest{Name: name, Image: disk, Disk: true, Env: []string{"VMID=9000"}}
	if err := d.Start(ctx, g); err != nil {
		t.Fatalf("boot the disk: %v", err)
	}
	waitReady(t, d, name)
	if got := readFile(t, d, name, "/etc/disk-marker"); got != "from the image file\n" {
		t.Fatalf("the guest sees %q in /etc/disk-marker", got)
	}
	// The guest writes; a new spec makes a new container from the disk.
	if err := d.Client.UploadToContainer(name, docker.UploadToContainerOptions{InputStream: tarOf(t, "written", "by the guest\n"), Path: "/"}); err != nil {
		t.Fatal(err)
	}
	ct, _ := d.Client.InspectContainerWithContext(name, ctx)
	g.Env = append(g.Env, "PHOENIX_FAULT_SSH_OFF=1")
	if err := d.Start(ctx, g); err != nil {
		t.Fatalf("start with a new spec: %v", err)
	}
	if ct2, _ := d.Client.InspectContainerWithContext(name, ctx); ct2 == nil || ct2.ID == ct.ID {
		t.Fatal("a new spec kept the old container")
	}
	if got := readFile(t, d, name, "/written"); got != "by the guest\n" {
		t.Fatalf("after the container was made anew the guest's file holds %q", got)
	}
	if ok, err := d.CommitDisk(ctx, name, stored); err != nil || !ok {
		t.Fatalf("CommitDisk: %v, %v", ok, err)
	}
	if ok, err := d.CommitDisk(ctx, name+"-gone", ref("none")); err != nil || ok {
		t.Fatalf("CommitDisk of a missing container: %v, %v", ok, err)
	}
	if err := d.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, Guest{Name: name, Image: stored, Disk: true}); err != nil {
		t.Fatalf("boot the stored disk: %v", err)
	}
	if got := readFile(t, d, name, "/written"); got != "by the guest\n" {
		t.Fatalf("the stored disk holds %q in /written", got)
	}
	for _, r := range []string{disk, copied} {
		if err := d.RemoveDisk(ctx, r); err != nil {
			t.Fatal(err)
		}
		if ok, err := d.HasDisk(ctx, r); err != nil || ok {
			t.Fatalf("HasDisk after RemoveDisk: %v, %v", ok, err)
		}
	}
	if err := d.RemoveDisk(ctx, disk); err != nil {
		t.Fatalf("RemoveDisk of a missing disk: %v", err)
	}
}

// readFile reads a file from a container (docker cp).
func readFile(t *testing.T, d *Docker, name, path string) string {
	t.Helper()
	var out bytes.Buffer
	if err := d.Client.DownloadFromContainer(name, docker.DownloadFromContainerOptions{Path: path, OutputStream: &out}); err != nil {
		t.Fatalf("read %s from %s: %v", path, name, err)
	}
	tr := tar.NewReader(&out)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(tr)
	return string(b)
}

func tarOf(t *testing.T, name, content string) io.Reader {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	return &buf
}
