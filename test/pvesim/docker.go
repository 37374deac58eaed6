package pvesim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ory/dockertest/v3/docker"
)

// Docker is the real Backend: one privileged container per VM (SYS_ADMIN
// where the engine cannot grant --privileged) on the rig network, through
// the Docker API at /var/run/docker.sock (the host's engine: bind sources
// are host paths).
type Docker struct {
	Client *docker.Client
	// Unprivileged skips --privileged where the rig found the engine
	// refuses it (PVESIM_PRIVILEGED=false).
	Unprivileged bool
}

// NewDocker returns a client of the engine named by DOCKER_HOST or the
// default socket. It does not contact the engine: qm commands that never
// touch a running VM work on a node without Docker.
func NewDocker(unprivileged bool) (*Docker, error) {
	cl, err := docker.NewClientFromEnv()
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	return &Docker{Client: cl, Unprivileged: unprivileged}, nil
}

// specLabel holds a hash of the Guest a container was made from: a stopped
// container is reused only while the VM's spec is unchanged.
const specLabel = "pvesim.spec"

// diskLabel marks a container made from a VM disk and names that disk.
const diskLabel = "pvesim.disk"

// A disk image has no image config (docker import keeps only files): its
// container runs what the rig's guest image runs (test/images/guest).
var (
	diskEntrypoint = []string{"/usr/bin/tini", "--"}
	diskCmd        = []string{"/usr/local/sbin/phoenix-guest-init"}
)

func specHash(g Guest) string {
	raw, _ := json.Marshal(struct {
		Image, Hostname, Network, IP, MAC string
		Binds, Env                        []string
		Disk                              bool
	}{g.Image, g.Hostname, g.Network, g.IP, g.MAC, g.Binds, g.Env, g.Disk})
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

func (d *Docker) inspect(ctx context.Context, name string) (*docker.Container, error) {
	ct, err := d.Client.InspectContainerWithContext(name, ctx)
	var missing *docker.NoSuchContainer
	if errors.As(err, &missing) {
		return nil, nil
	}
	return ct, err
}

// Start implements Backend.
func (d *Docker) Start(ctx context.Context, g Guest) error {
	hash := specHash(g)
	ct, err := d.inspect(ctx, g.Name)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", g.Name, err)
	}
	if ct != nil && ct.Config != nil && ct.Config.Labels[specLabel] != hash {
		// The VM's disk keeps what the guest wrote, whatever else changed.
		if _, err := d.CommitDisk(ctx, g.Name, ct.Config.Labels[diskLabel]); err != nil {
			return err
		}
		if err := d.Remove(ctx, g.Name); err != nil {
			return err
		}
		ct = nil
	}
	privileged := !d.Unprivileged
	if ct == nil {
		if err := d.create(ctx, g, hash, privileged); err != nil {
			return err
		}
	} else if ct.State.Running {
		return nil
	} else {
		privileged = ct.HostConfig != nil && ct.HostConfig.Privileged
	}
	err = d.start(ctx, g.Name)
	if err != nil && privileged && strings.Contains(err.Error(), "unable to apply caps") {
		// Where the engine itself lacks capabilities (a nested or
		// restricted host), --privileged cannot start; SYS_ADMIN is
		// enough for the guest's bind mounts.
		if err := d.Remove(ctx, g.Name); err != nil {
			return err
		}
		if err := d.create(ctx, g, hash, false); err != nil {
			return err
		}
		err = d.start(ctx, g.Name)
	}
	return err
}

func (d *Docker) start(ctx context.Context, name string) error {
	err := d.Client.StartContainerWithContext(name, nil, ctx)
	var already *docker.ContainerAlreadyRunning
	if err != nil && !errors.As(err, &already) {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

func (d *Docker) create(ctx context.Context, g Guest, hash string, privileged bool) error {
	labels := map[string]string{specLabel: hash}
	for k, v := range g.Labels {
		labels[k] = v
	}
	var entrypoint, cmd []string
	if g.Disk {
		labels[diskLabel] = g.Image
		entrypoint, cmd = diskEntrypoint, diskCmd
	}
	opts := docker.CreateContainerOptions{
		Name: g.Name,
		Config: &docker.Config{
			Image:      g.Image,
			Entrypoint: entrypoint,
			Cmd:        cmd,
			Hostname:   g.Hostname,
			Env:        g.Env,
			Labels:     labels,
			MacAddress: g.MAC, // API < 1.44 takes the MAC here
		},
		HostConfig: &docker.HostConfig{
			Privileged:  privileged,
			Binds:       g.Binds,
			NetworkMode: g.Network,
		},
		Context: ctx,
	}
	if !privileged {
		opts.HostConfig.CapAdd = []string{"SYS_ADMIN", "NET_ADMIN"}
		opts.HostConfig.SecurityOpt = []string{"seccomp=unconfined", "apparmor=unconfined"}
	}
	if g.Network != "" {
		ep := &docker.EndpointConfig{MacAddress: g.MAC}
		if g.IP != "" {
			ep.IPAMConfig = &docker.EndpointIPAMConfig{IPv4Address: g.IP}
		}
		opts.NetworkingConfig = &docker.NetworkingConfig{EndpointsConfig: map[string]*docker.EndpointConfig{g.Network: ep}}
	}
	if _, err := d.Client.CreateContainer(opts); err != nil {
		return fmt.Errorf("create %s from %s: %w", g.Name, g.Image, err)
	}
	return nil
}

// State implements Backend.
func (d *Docker) State(ctx context.Context, name string) (GuestState, error) {
	ct, err := d.inspect(ctx, name)
	if err != nil || ct == nil {
		return GuestState{}, err
	}
	return GuestState{Running: ct.State.Running, PID: ct.State.Pid, StartedAt: ct.State.StartedAt}, nil
}

// Wait returns once the guest's container no longer runs (a VM's QEMU
// stand-in lives that long).
func (d *Docker) Wait(ctx context.Context, name string) error {
	if st, err := d.State(ctx, name); err != nil || !st.Running {
		return err
	}
	_, err := d.Client.WaitContainerWithContext(name, ctx)
	var missing *docker.NoSuchContainer
	if err == nil || errors.As(err, &missing) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("wait for %s: %w", name, err)
}

// Shutdown implements Backend: SIGTERM to the guest's init, then wait.
func (d *Docker) Shutdown(ctx context.Context, name string, timeout time.Duration) error {
	if err := d.signal(ctx, name, docker.SIGTERM); err != nil {
		return err
	}
	return d.waitStopped(ctx, name, timeout)
}

// Kill implements Backend.
func (d *Docker) Kill(ctx context.Context, name string) error {
	if err := d.signal(ctx, name, docker.SIGKILL); err != nil {
		return err
	}
	if err := d.waitStopped(ctx, name, 10*time.Second); err != nil {
		return fmt.Errorf("kill %s: still running", name)
	}
	return nil
}

func (d *Docker) signal(ctx context.Context, name string, sig docker.Signal) error {
	err := d.Client.KillContainer(docker.KillContainerOptions{ID: name, Signal: sig, Context: ctx})
	var missing *docker.NoSuchContainer
	var stopped *docker.ContainerNotRunning
	if err == nil || errors.As(err, &missing) || errors.As(err, &stopped) {
		return nil
	}
	return fmt.Errorf("signal %s: %w", name, err)
}

func (d *Docker) waitStopped(ctx context.Context, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := d.State(ctx, name)
		if err != nil {
			return err
		}
		if !st.Running {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrShutdownTimeout
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// Remove implements Backend.
func (d *Docker) Remove(ctx context.Context, name string) error {
	err := d.Client.RemoveContainer(docker.RemoveContainerOptions{ID: name, Force: true, RemoveVolumes: true, Context: ctx})
	var missing *docker.NoSuchContainer
	if err == nil || errors.As(err, &missing) {
		return nil
	}
	return fmt.Errorf("remove %s: %w", name, err)
}

// splitRef cuts "repo:tag".
func splitRef(ref string) (repo, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

// importCacheRef names the imported image of a file by its sha256, kept
// across rigs: the same bytes give the same file system, and a second
// import of a cloud image costs a tag instead of seconds.
func importCacheRef(sha256Hex string) string { return "phoenix-rig-import:" + sha256Hex[:32] }

// ImportDisk implements Backend: docker import of the file (cached by its
// sha256), tagged ref.
func (d *Docker) ImportDisk(ctx context.Context, ref, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	cached := importCacheRef(hex.EncodeToString(h.Sum(nil)))
	if ok, err := d.HasDisk(ctx, cached); err != nil {
		return err
	} else if !ok {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		repo, tag := splitRef(cached)
		err := d.Client.ImportImage(docker.ImportImageOptions{
			Repository: repo, Tag: tag, Source: "-", InputStream: f, OutputStream: io.Discard, Context: ctx,
		})
		if err != nil {
			return fmt.Errorf("docker import %s: %w", path, err)
		}
	}
	return d.tag(ctx, cached, ref)
}

func (d *Docker) tag(ctx context.Context, from, to string) error {
	repo, tag := splitRef(to)
	if err := d.Client.TagImage(from, docker.TagImageOptions{Repo: repo, Tag: tag, Force: true, Context: ctx}); err != nil {
		return fmt.Errorf("docker tag %s %s: %w", from, to, err)
	}
	return nil
}

// CommitDisk implements Backend.
func (d *Docker) CommitDisk(ctx context.Context, container, ref string) (bool, error) {
	ct, err := d.inspect(ctx, container)
	if err != nil || ct == nil || ct.Config == nil || ct.Config.Labels[diskLabel] == "" || ref == "" {
		return false, err
	}
	repo, tag := splitRef(ref)
	if _, err := d.Client.CommitContainer(docker.CommitContainerOptions{Container: container, Repository: repo, Tag: tag, Context: ctx}); err != nil {
		return false, fmt.Errorf("docker commit %s %s: %w", container, ref, err)
	}
	return true, nil
}

// CopyDisk implements Backend.
func (d *Docker) CopyDisk(ctx context.Context, from, to string) (bool, error) {
	if ok, err := d.HasDisk(ctx, from); err != nil || !ok {
		return false, err
	}
	return true, d.tag(ctx, from, to)
}

// RemoveDisk implements Backend: the tag goes; the image goes with its last tag.
func (d *Docker) RemoveDisk(ctx context.Context, ref string) error {
	err := d.Client.RemoveImageExtended(ref, docker.RemoveImageOptions{Force: true, Context: ctx})
	if err == nil || errors.Is(err, docker.ErrNoSuchImage) {
		return nil
	}
	return fmt.Errorf("docker rmi %s: %w", ref, err)
}

// HasDisk implements Backend.
func (d *Docker) HasDisk(ctx context.Context, ref string) (bool, error) {
	_, err := d.Client.InspectImage(ref)
	if errors.Is(err, docker.ErrNoSuchImage) {
		return false, nil
	}
	return err == nil, err
}
