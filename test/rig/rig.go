// Package rig is phoenix's integration test rig: a simulated Proxmox node
// (pvesim behind sshd, in a container) on a Docker network that stands for
// vmbr0, with guests as sibling containers. See docs/ARCHITECTURE.md, "The rig".
//
// Tests call New(t); the lab program calls Start and keeps the rig with Save.
// The rig talks only to 127.0.0.1 (the node's published sshd) and to its own
// Docker network.
package rig

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/errgroup"
)

// Labels put on every container and network the harness creates.
const (
	labelID       = "phoenix-rig.id"
	labelDir      = "phoenix-rig.dir"
	labelOwnerPID = "phoenix-rig.owner-pid"
)

// PVENode is the simulated node's Proxmox name (its hostname).
const PVENode = "pve"

// TemplateVMID is the template the harness builds on the node (unless
// Options.BareNode) and the rig's config defines.
const TemplateVMID = 9000

// Options say how to start a rig.
type Options struct {
	// Dir is the rig folder on the host; empty means a new temp dir.
	Dir string
	// Persistent rigs (the lab) outlive the process that started them: no
	// owner-pid label (so no later Start reaps them) and no expiry.
	Persistent bool
	// MaxLifetime stops the node after this long if nobody closed the rig, a
	// safety net for a hung test. Default 90 minutes; ignored when Persistent.
	MaxLifetime time.Duration
	// Log receives progress lines (image builds and their durations).
	Log func(format string, args ...any)
	// BareNode leaves the node as the Proxmox installer does: no VMs. By
	// default the harness builds template TemplateVMID from the served cloud
	// image through pvesim (download-url, qm create with import-from, qm
	// template), for tests that are not about building it.
	BareNode bool
	// Nodes is how many simulated nodes the rig has: 0 or 1 is one
	// standalone node (PVENode); 2 or 3 are a cluster (ClusterNodeName)
	// sharing one /etc/pve (cluster.go). The template, when built, is on
	// the first.
	Nodes int
}

// Rig is one running rig. Its exported fields are what the lab saves in
// .lab/rig.json to find the rig again.
type Rig struct {
	ID      string       `json:"id"`
	Dir     string       `json:"dir"`
	Network string       `json:"network"`
	Subnet  netip.Prefix `json:"subnet"`
	Images  Images       `json:"images"`
	// NodeHost:NodePort is the node's sshd as published on the host.
	NodeHost string `json:"node_host"`
	NodePort int    `json:"node_port"`
	// NodeKey and GuestKey are private key files (public halves beside them
	// with .pub); GuestPubKey is the guest key's authorized_keys line.
	NodeKey     string `json:"node_key"`
	GuestKey    string `json:"guest_key"`
	GuestPubKey string `json:"guest_pub_key"`
	// KnownHosts pins the node's host keys; GuestKnownHosts starts empty.
	KnownHosts      string `json:"known_hosts"`
	GuestKnownHosts string `json:"guest_known_hosts"`
	// CloudImageURL is the cloud image on the rig's mirror (MirrorIP), and
	// CloudImageSHA256 its checksum.
	CloudImageURL    string `json:"cloud_image_url"`
	CloudImageSHA256 string `json:"cloud_image_sha256"`
	// Privileged says whether the engine runs privileged containers. Some
	// refuse (a bounding set without CAP_SYS_RESOURCE: "unable to apply
	// caps"); the rig's containers then get CAP_SYS_ADMIN, all that bind
	// mounts and hostname need.
	Privileged bool `json:"privileged"`
	// Cluster lists the nodes of a cluster rig, the first one's sshd also
	// in NodePort; empty for a standalone node.
	Cluster []ClusterNode `json:"cluster,omitempty"`

	pool      *dockertest.Pool
	closeOnce sync.Once
	closeErr  error
}

// Start builds what is missing (pvesim, images, the cloud image) and brings a
// rig up: network, node container, image mirror, keys, known_hosts, and
// template 9000 unless o.BareNode. On error nothing is left.
func Start(ctx context.Context, o Options) (_ *Rig, err error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	pool, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	reapOrphans(ctx, pool, logf)

	id, err := newID()
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "phoenix-rig-"+id+"-"); err != nil {
			return nil, err
		}
	}
	// Sibling containers name bind sources on the host: the folder must be absolute.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	r := &Rig{
		ID: id, Dir: dir, Network: "phoenix-rig-" + id, NodeHost: "127.0.0.1",
		NodeKey: filepath.Join(dir, "node_ed25519"), GuestKey: filepath.Join(dir, "guest_ed25519"),
		KnownHosts: filepath.Join(dir, "known_hosts"), GuestKnownHosts: filepath.Join(dir, "guest_known_hosts"),
		pool: pool,
	}
	defer func() {
		if err != nil {
			if cerr := r.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
			}
			err = fmt.Errorf("rig %s: %w", id, err)
		}
	}()
	for _, sub := range []string{"", "qga", "export/data", "seed", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "export", "data", "hello.txt"), []byte("exported by the rig node\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(r.GuestKnownHosts, nil, 0o644); err != nil {
		return nil, err
	}

	g, gctx := errgroup.WithContext(ctx)
	var cloud CloudImage
	g.Go(func() error {
		im, err := EnsureImages(gctx, pool, logf)
		r.Images = im
		if err != nil {
			return err
		}
		cloud, err = EnsureCloudImage(gctx, pool, im.Guest, logf)
		return err
	})
	g.Go(func() error { return buildPvesim(gctx, filepath.Join(dir, "bin", "pvesim")) })
	if err := g.Wait(); err != nil {
		return nil, err
	}

	nodePub, err := writeKeyPair(r.NodeKey, "phoenix-rig-"+id+"-node")
	if err != nil {
		return nil, err
	}
	if r.GuestPubKey, err = writeKeyPair(r.GuestKey, "phoenix-rig-"+id+"-guest"); err != nil {
		return nil, err
	}

	labels := map[string]string{labelID: id, labelDir: dir}
	if !o.Persistent {
		labels[labelOwnerPID] = strconv.Itoa(os.Getpid())
	}
	if r.Subnet, err = createNetwork(ctx, pool, r.Network, labels); err != nil {
		return nil, err
	}
	if r.Privileged, err = probePrivileged(ctx, pool, r.Images.Node, "phoenix-rig-"+id+"-probe", labels); err != nil {
		return nil, err
	}
	if !r.Privileged {
		logf("rig: this Docker engine refuses privileged containers; node and guests get CAP_SYS_ADMIN instead")
	}
	if o.Nodes > 1 {
		if err := r.planCluster(o.Nodes); err != nil {
			return nil, err
		}
	}
	for _, n := range r.nodeSpecs() {
		node, err := r.startNode(ctx, n, labels)
		if err != nil {
			return nil, err
		}
		if !o.Persistent {
			life := o.MaxLifetime
			if life == 0 {
				life = 90 * time.Minute
			}
			_ = node.Expire(uint(life.Seconds()))
		}
	}
	if err := r.startMirror(ctx, cloud, labels); err != nil {
		return nil, err
	}
	var known strings.Builder
	for _, n := range r.nodeSpecs() {
		lines, err := r.setUpNode(ctx, n, nodePub)
		if err != nil {
			return nil, err
		}
		known.WriteString(lines)
	}
	if err := os.WriteFile(r.KnownHosts, []byte(known.String()), 0o644); err != nil {
		return nil, err
	}
	for _, n := range r.nodeSpecs() {
		if err := r.waitSSH(n.addr()); err != nil {
			return nil, err
		}
	}
	if !o.BareNode {
		start := time.Now()
		if err := r.buildTemplate(ctx); err != nil {
			return nil, err
		}
		logf("rig: built template %d from %s in %s", TemplateVMID, r.CloudImageURL, time.Since(start).Round(100*time.Millisecond))
	}
	return r, nil
}

// Attach finds a rig saved with Save (the lab's .lab/rig.json).
func Attach(ctx context.Context, path string) (*Rig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &Rig{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.ID == "" {
		return nil, fmt.Errorf("%s: no rig id", path)
	}
	if r.pool, err = connect(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Save writes the rig's description as JSON, for Attach.
func (r *Rig) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Close removes every container of the rig (the node and pvesim's guests),
// its network and its folder. It is safe to call more than once.
func (r *Rig) Close() error {
	r.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		r.closeErr = teardown(ctx, r.pool, r.ID, r.Dir)
	})
	return r.closeErr
}

// NodeContainer is the (first) node's container name.
func (r *Rig) NodeContainer() string { return r.nodeSpecs()[0].container }

// GuestContainer is the container pvesim runs VM vmid in.
func (r *Rig) GuestContainer(vmid int) string {
	return fmt.Sprintf("phoenix-rig-%s-vm-%d", r.ID, vmid)
}

// NodeAddr is the node's sshd as host:port on 127.0.0.1.
func (r *Rig) NodeAddr() string {
	return net.JoinHostPort(r.NodeHost, strconv.Itoa(r.NodePort))
}

// Gateway is the network's .1 (the host side of the bridge).
func (r *Rig) Gateway() string { return r.host(1) }

// NodeIP is the node's address on the rig network (.2), which guests use for
// NFS and as jump host.
func (r *Rig) NodeIP() string { return r.host(2) }

// GuestIP is the address of the i-th guest (1 ≤ i ≤ 150): .100+i.
func (r *Rig) GuestIP(i int) string {
	if i < 1 || i > 150 {
		panic(fmt.Sprintf("rig: guest index %d out of 1..150", i))
	}
	return r.host(100 + i)
}

// PrefixLen is the network's prefix length, for ipconfig0 (ip=<GuestIP>/<PrefixLen>).
func (r *Rig) PrefixLen() int { return r.Subnet.Bits() }

func (r *Rig) host(n int) string {
	a := r.Subnet.Addr().As4()
	a[3] = byte(n)
	return netip.AddrFrom4(a).String()
}

// NodeExec runs argv in the node container through docker exec: an oracle
// independent of SSH and of phoenix. A non-zero exit is in the result, not err.
func (r *Rig) NodeExec(ctx context.Context, argv ...string) (ExecResult, error) {
	return dockerExec(ctx, r.pool, r.NodeContainer(), nil, argv...)
}

// GuestExec runs argv in VM vmid's container through docker exec.
func (r *Rig) GuestExec(ctx context.Context, vmid int, argv ...string) (ExecResult, error) {
	return dockerExec(ctx, r.pool, r.GuestContainer(vmid), nil, argv...)
}

// NodePut writes a file on the node.
func (r *Rig) NodePut(ctx context.Context, path string, content []byte, mode fs.FileMode) error {
	return uploadFile(ctx, r.pool, r.NodeContainer(), path, content, mode)
}

// SetFault switches a fault of VM vmid on (value "1", or seconds for
// agent-kill-after) or off (value ""). pvesim applies it at the VM's next start.
func (r *Rig) SetFault(ctx context.Context, vmid int, name, value string) error {
	switch name {
	case "agent-off", "agent-kill-after", "ssh-off", "boot-hang": // the faults pvesim knows
	default:
		return fmt.Errorf("unknown fault %q (agent-off, agent-kill-after, ssh-off, boot-hang)", name)
	}
	path := fmt.Sprintf("/etc/pvesim/faults/%d/%s", vmid, name)
	if value == "" {
		res, err := r.NodeExec(ctx, "rm", "-f", path)
		if err != nil {
			return err
		}
		return res.Err()
	}
	return r.NodePut(ctx, path, []byte(value+"\n"), 0o644)
}

// SetLatency makes every qm/pvesh call on the node take ms longer (0 turns it off).
func (r *Rig) SetLatency(ctx context.Context, ms int) error {
	const path = "/etc/pvesim/latency_ms"
	if ms <= 0 {
		res, err := r.NodeExec(ctx, "rm", "-f", path)
		if err != nil {
			return err
		}
		return res.Err()
	}
	return r.NodePut(ctx, path, []byte(strconv.Itoa(ms)+"\n"), 0o644)
}

// InjectSource is the file the harness places on the node for the file
// injection of VMConfig, and InjectContent its content.
const InjectSource = "/root/rig-files/phoenix-motd"

// InjectContent returns the content of InjectSource for this rig.
func (r *Rig) InjectContent() string { return "managed by phoenix (rig " + r.ID + ")\n" }

func (r *Rig) startNode(ctx context.Context, n nodeSpec, labels map[string]string) (*dockertest.Resource, error) {
	binds := []string{
		"/var/run/docker.sock:/var/run/docker.sock",
		r.Dir + ":/rig",
		filepath.Join(r.Dir, "qga") + ":/var/run/qemu-server",
		filepath.Join(r.Dir, "export") + ":/export",
		filepath.Join(r.Dir, "bin", "pvesim") + ":/usr/local/lib/pvesim/pvesim:ro",
	}
	var cmd []string
	if len(r.Cluster) > 0 {
		binds = append(binds, r.pmxcfsDir()+":/etc/pve")
		cmd = clusterNodeCmd
	}
	c, err := r.pool.Client.CreateContainer(dc.CreateContainerOptions{
		Name: n.container,
		Config: &dc.Config{
			Hostname:     n.name,
			Image:        r.Images.Node,
			Labels:       labels,
			ExposedPorts: map[dc.Port]struct{}{"22/tcp": {}},
			Cmd:          cmd,
			// Resource.Expire stops the container with this signal and kills it
			// only when the grace period ends: sshd ignores SIGWINCH.
			StopSignal: "SIGWINCH",
		},
		HostConfig: &dc.HostConfig{
			Privileged:   r.Privileged,
			CapAdd:       r.capAdd(),
			Binds:        binds,
			PortBindings: map[dc.Port][]dc.PortBinding{"22/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}},
		},
		NetworkingConfig: &dc.NetworkingConfig{EndpointsConfig: map[string]*dc.EndpointConfig{
			r.Network: {IPAMConfig: &dc.EndpointIPAMConfig{IPv4Address: n.ip}},
		}},
		Context: ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", n.name, err)
	}
	if err := r.pool.Client.StartContainerWithContext(c.ID, nil, ctx); err != nil {
		return nil, fmt.Errorf("start node %s: %w", n.name, err)
	}
	res, ok := r.pool.ContainerByName("^/" + n.container + "$")
	if !ok {
		return nil, fmt.Errorf("node container %s vanished after start", n.container)
	}
	bindings := res.Container.NetworkSettings.Ports["22/tcp"]
	if len(bindings) == 0 || bindings[0].HostPort == "" {
		return nil, fmt.Errorf("node container %s: port 22 not published", n.container)
	}
	port, err := strconv.Atoi(bindings[0].HostPort)
	if err != nil {
		return nil, fmt.Errorf("node port %q: %w", bindings[0].HostPort, err)
	}
	r.setPort(n.name, port)
	return res, nil
}

// setUpNode writes what pvesim and phoenix need on the node, and returns
// the known_hosts lines of its host keys, read through docker exec (a
// channel SSH cannot spoof).
func (r *Rig) setUpNode(ctx context.Context, n nodeSpec, nodePub string) (string, error) {
	env := fmt.Sprintf("PVESIM_HOST_DIR=%s\nPVESIM_NETWORK=%s\nPVESIM_GUEST_IMAGE=%s\nPVESIM_RIG_ID=%s\nPVESIM_NODE=%s\nPVESIM_PRIVILEGED=%t\n",
		r.Dir, r.Network, r.Images.Guest, r.ID, n.name, r.Privileged)
	type file struct {
		path, content string
		mode          fs.FileMode
	}
	files := []file{
		{"/etc/pvesim/env", env, 0o644},
		{"/root/.ssh/authorized_keys", nodePub + "\n", 0o600},
		{InjectSource, r.InjectContent(), 0o644},
	}
	if len(r.Cluster) == 0 {
		// A standalone node's .members has only its name (a cluster's are
		// made by joinCluster).
		files = append(files, file{"/etc/pve/storage.cfg", storageConfig, 0o640},
			file{"/etc/pve/.members", fmt.Sprintf("{\n\"nodename\": \"%s\",\n\"version\": 1\n}\n", n.name), 0o440},
			file{"/etc/pve/.vmlist", emptyVMList, 0o440})
	}
	for _, f := range files {
		if err := r.putOn(ctx, n.container, f.path, []byte(f.content), f.mode); err != nil {
			return "", fmt.Errorf("node %s: write %s: %w", n.name, f.path, err)
		}
	}
	if len(r.Cluster) > 0 {
		if err := r.joinCluster(ctx, n); err != nil {
			return "", err
		}
	}
	res, err := dockerExec(ctx, r.pool, n.container, nil, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub")
	if err != nil {
		return "", err
	}
	if err := res.Err(); err != nil {
		return "", fmt.Errorf("node %s: read host keys: %w", n.name, err)
	}
	return knownHostsLines(n.addr(), res.Stdout)
}

func (r *Rig) putOn(ctx context.Context, container, path string, content []byte, mode fs.FileMode) error {
	return uploadFile(ctx, r.pool, container, path, content, mode)
}

// waitSSH waits until root can log in on the node at addr with the pinned
// host key.
func (r *Rig) waitSSH(addr string) error {
	r.pool.MaxWait = time.Minute
	if err := r.pool.Retry(func() error { return r.login(addr) }); err != nil {
		return fmt.Errorf("node sshd %s: %w", addr, err)
	}
	return nil
}

// login logs in as root on the node at addr with the rig's key, checking
// its host key against the rig's known_hosts.
func (r *Rig) login(addr string) error {
	key, err := os.ReadFile(r.NodeKey)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return err
	}
	hostKeys, err := knownhosts.New(r.KnownHosts)
	if err != nil {
		return err
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         5 * time.Second,
	})
	if err != nil {
		return err
	}
	return c.Close()
}

// capAdd is what a container needs instead of privileged mode.
func (r *Rig) capAdd() []string {
	if r.Privileged {
		return nil
	}
	return []string{"SYS_ADMIN"}
}

// probePrivileged starts a throwaway privileged container from image and
// reports whether the engine allowed it.
func probePrivileged(ctx context.Context, pool *dockertest.Pool, image, name string, labels map[string]string) (bool, error) {
	c, err := pool.Client.CreateContainer(dc.CreateContainerOptions{
		Name:       name,
		Config:     &dc.Config{Image: image, Entrypoint: []string{"true"}, Labels: labels},
		HostConfig: &dc.HostConfig{Privileged: true},
		Context:    ctx,
	})
	if err != nil {
		return false, fmt.Errorf("probe privileged containers: %w", err)
	}
	defer pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: c.ID, Force: true, Context: ctx})
	err = pool.Client.StartContainerWithContext(c.ID, nil, ctx)
	switch {
	case err == nil:
		return true, nil
	case strings.Contains(err.Error(), "apply caps"):
		return false, nil
	default:
		return false, fmt.Errorf("probe privileged containers: %w", err)
	}
}

// storageConfig is the node's /etc/pve/storage.cfg: the installer's two
// storages, with snippets (cicustom) and import (download-url of disk
// images, PVE 8.4) enabled on local.
const storageConfig = `dir: local
	path /var/lib/vz
	content iso,vztmpl,backup,snippets,import

lvmthin: local-lvm
	thinpool data
	vgname pve
	content rootdir,images
`

// createNetwork makes the rig's bridge on a free /24 of 10.210.0.0/16 with
// the gateway at .1, trying other /24s when Docker reports an overlap.
func createNetwork(ctx context.Context, pool *dockertest.Pool, name string, labels map[string]string) (netip.Prefix, error) {
	var last error
	for attempt := 0; attempt < 32; attempt++ {
		var b [1]byte
		if _, err := rand.Read(b[:]); err != nil {
			return netip.Prefix{}, err
		}
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, b[0], 0}), 24)
		gw := netip.AddrFrom4([4]byte{10, 210, b[0], 1})
		_, err := pool.Client.CreateNetwork(dc.CreateNetworkOptions{
			Name:    name,
			Driver:  "bridge",
			IPAM:    &dc.IPAMOptions{Driver: "default", Config: []dc.IPAMConfig{{Subnet: subnet.String(), Gateway: gw.String()}}},
			Labels:  labels,
			Context: ctx,
		})
		if err == nil {
			return subnet, nil
		}
		if !strings.Contains(err.Error(), "overlap") {
			return netip.Prefix{}, fmt.Errorf("create network %s: %w", name, err)
		}
		last = err
	}
	return netip.Prefix{}, fmt.Errorf("create network %s: no free /24 in 10.210.0.0/16: %w", name, last)
}

func newID() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// buildPvesim builds the simulated qm/pvesh as a static binary for the node.
func buildPvesim(ctx context.Context, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	// go test puts $GOROOT/bin first in the PATH of test binaries.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build pvesim: %w", err)
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, goBin, "build", "-o", out, "./test/pvesim/cmd/pvesim")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build pvesim: %w: %s", err, tail(buf.String(), 15))
	}
	return nil
}

// moduleRoot walks up from the working directory (a test's package dir, or
// wherever the lab was started in the repo) to phoenix's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/phoenix-hv/phoenix\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("phoenix's go.mod not found above the working directory")
		}
		dir = parent
	}
}

// GuestRunning reports whether VM vmid's container exists and runs, as
// Docker sees it (the oracle for qm start/stop/shutdown/destroy).
func (r *Rig) GuestRunning(ctx context.Context, vmid int) (exists, running bool, err error) {
	c, err := r.pool.Client.InspectContainerWithContext(r.GuestContainer(vmid), ctx)
	var nc *dc.NoSuchContainer
	if errors.As(err, &nc) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return true, c.State.Running, nil
}

// WaitCloudInit polls `cloud-init status --long` in VM vmid (docker exec)
// until cloud-init has finished, and returns that last output. It polls
// rather than using `status --wait`, which was seen to end with no status
// line (only its progress dots) while cloud-init was still writing its
// status file; a poll that fails is simply tried again until ctx ends.
func (r *Rig) WaitCloudInit(ctx context.Context, vmid int) (string, error) {
	var last ExecResult
	for {
		res, err := r.GuestExec(ctx, vmid, "cloud-init", "status", "--long")
		if err == nil {
			last = res
			status := ""
			for _, line := range strings.Split(res.Stdout, "\n") {
				if v, ok := strings.CutPrefix(line, "status: "); ok {
					status = strings.TrimSpace(v)
				}
			}
			if status != "" && status != "running" && status != "not run" && status != "not started" {
				return res.Stdout, nil
			}
		}
		select {
		case <-ctx.Done():
			return last.Stdout, fmt.Errorf("vm %d: cloud-init did not finish: %w (last: %q %q)", vmid, ctx.Err(), last.Stdout, last.Stderr)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
