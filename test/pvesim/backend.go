package pvesim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Backend runs the VMs. The real one starts Docker containers; unit tests
// use a fake.
type Backend interface {
	// Start creates and starts the guest, or starts its existing stopped
	// container again (so guest state survives a stop/start) when the
	// container was made from the same spec.
	Start(ctx context.Context, g Guest) error
	// State reports the guest's container; a missing one is not running.
	State(ctx context.Context, name string) (GuestState, error)
	// Shutdown asks the guest's init to stop (SIGTERM) and waits up to
	// timeout; ErrShutdownTimeout when it is still running then.
	Shutdown(ctx context.Context, name string, timeout time.Duration) error
	// Kill stops the guest at once and keeps its container.
	Kill(ctx context.Context, name string) error
	// Remove deletes the guest's container; a missing one is no error.
	Remove(ctx context.Context, name string) error
}

// Disks keeps the VMs' disks: a disk's content is an image (named by
// diskRef); a guest's container holds the writes since it was made.
type Disks interface {
	// ImportDisk makes ref from a disk image file in pvesim's format.
	ImportDisk(ctx context.Context, ref, path string) error
	// CommitDisk stores the file system of container (made from a disk
	// with Guest.Disk) as ref; false when there is no such container.
	CommitDisk(ctx context.Context, container, ref string) (bool, error)
	// CopyDisk makes to a copy of from; false when from does not exist.
	CopyDisk(ctx context.Context, from, to string) (bool, error)
	// RemoveDisk deletes ref; a missing one is no error.
	RemoveDisk(ctx context.Context, ref string) error
	// HasDisk reports whether ref exists.
	HasDisk(ctx context.Context, ref string) (bool, error)
}

// ErrShutdownTimeout: the guest did not stop within the shutdown timeout.
var ErrShutdownTimeout = errors.New("shutdown timeout")

// Guest is what a VM start asks the backend for.
type Guest struct {
	Name     string            // container name
	Image    string            // guest image
	Hostname string            // from the VM name
	Network  string            // the rig network (vmbr0)
	IP       string            // fixed IPv4 address of ipconfig0; "" lets Docker assign
	MAC      string            // MAC address of net0
	Binds    []string          // host:container bind mounts
	Env      []string          // KEY=VALUE
	Labels   map[string]string // for finding pvesim's containers
	// Disk: Image is the VM's boot disk (a file system without image
	// config): the backend boots it with the guest init, and keeps the
	// container's writes in it when the container has to be made anew.
	Disk bool
}

// GuestState is the state of a guest container.
type GuestState struct {
	Running   bool
	PID       int
	StartedAt time.Time
}

// containerName is the container of a VM.
func (s *Sim) containerName(vmid int) string {
	return fmt.Sprintf("phoenix-rig-%s-vm-%d", s.RigID, vmid)
}

func (s *Sim) pidFile(vmid int) string {
	return s.path("var/run/qemu-server", strconv.Itoa(vmid)+".pid")
}

// vmRun is the run state of a VM as qm sees it.
type vmRun struct {
	running bool
	pid     int
	uptime  int64
}

// runState asks the backend about a VM that was started; a VM without a
// pid file is stopped without asking (so qm works on stopped VMs even
// without Docker). A container that died counts as stopped.
func (c *call) runState(vmid int) (vmRun, error) {
	if _, err := os.Stat(c.pidFile(vmid)); err != nil {
		return vmRun{}, nil
	}
	st, err := c.Backend.State(c.ctx, c.containerName(vmid))
	if err != nil {
		return vmRun{}, fmt.Errorf("VM %d: container state: %w", vmid, err)
	}
	if !st.Running {
		return vmRun{}, nil
	}
	up := int64(0)
	if !st.StartedAt.IsZero() {
		up = int64(c.Now().Sub(st.StartedAt).Seconds())
		if up < 0 {
			up = 0
		}
	}
	return vmRun{running: true, pid: st.PID, uptime: up}, nil
}

func (c *call) isRunning(vmid int) (bool, error) {
	r, err := c.runState(vmid)
	return r.running, err
}

// guestSpec builds the container of a VM from its config.
func (c *call) guestSpec(vmid int, conf map[string]string) (Guest, error) {
	if c.HostDir == "" {
		return Guest{}, errors.New("PVESIM_HOST_DIR is not set")
	}
	image, disk, err := c.bootImage(conf)
	if err != nil {
		return Guest{}, err
	}
	hostname, _ := hostnameFQDN(conf, vmid)
	g := Guest{
		Name:     c.containerName(vmid),
		Image:    image,
		Hostname: hostname,
		Network:  c.Network,
		Binds: []string{
			filepath.Join(c.HostDir, "seed", strconv.Itoa(vmid)) + ":/var/lib/cloud/seed/nocloud",
			filepath.Join(c.HostDir, "qga") + ":/run/qga",
			filepath.Join(c.HostDir, "export") + ":/run/nfs-server",
		},
		Env:    []string{"VMID=" + strconv.Itoa(vmid)},
		Labels: map[string]string{"pvesim.rig": c.RigID, "pvesim.vmid": strconv.Itoa(vmid)},
		Disk:   disk,
	}
	if net0, ok := conf["net0"]; ok {
		g.MAC = strings.ToLower(netMAC(net0))
	}
	if ipc, ok := conf["ipconfig0"]; ok {
		if ip := parsePropString(ipc, "ip").get("ip"); ip != "" && ip != "dhcp" && ip != "manual" {
			g.IP, _, _ = strings.Cut(ip, "/")
		}
	}
	faults, err := c.faultEnv(vmid)
	if err != nil {
		return Guest{}, err
	}
	if !disk && c.Disks != nil && !slices.Contains(faults, noBootFault) {
		faults = append(faults, noBootFault)
		sort.Strings(faults)
	}
	g.Env = append(g.Env, faults...)
	return g, nil
}

// noBootFault: a VM without a bootable disk runs and shows nothing, like a
// machine stuck at "No bootable device": the guest image's init hangs.
const noBootFault = "PHOENIX_FAULT_BOOT_HANG=1"

// bootImage is what the VM boots: the content of its boot disk, or, when
// that disk holds no root file system (a blank or raw disk), the guest
// image with noBootFault. Without a disk store every VM boots the guest
// image.
func (c *call) bootImage(conf map[string]string) (image string, disk bool, err error) {
	if d := bootDrive(conf); d != nil && c.Disks != nil {
		ref := c.diskRef(d.volid())
		ok, err := c.Disks.HasDisk(c.ctx, ref)
		if err != nil {
			return "", false, err
		}
		if ok {
			return ref, true, nil
		}
	}
	if c.GuestImage == "" {
		return "", false, errors.New("PVESIM_GUEST_IMAGE is not set")
	}
	return c.GuestImage, false, nil
}

// faultEnv turns /etc/pvesim/faults/VMID/<name> files into
// PHOENIX_FAULT_<NAME>=<content or 1> for the guest's init.
func (c *call) faultEnv(vmid int) ([]string, error) {
	dir := c.path("etc/pvesim/faults", strconv.Itoa(vmid))
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var env []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		v := strings.TrimSpace(string(raw))
		if v == "" {
			v = "1"
		}
		name := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(e.Name()))
		env = append(env, "PHOENIX_FAULT_"+name+"="+v)
	}
	sort.Strings(env)
	return env, nil
}
