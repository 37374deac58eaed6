package pvesim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	image, err := c.guestImage(vmid)
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
	g.Env = append(g.Env, faults...)
	return g, nil
}

// guestImage is the image of a VM: /etc/pvesim/images/<template vmid> for
// clones of that template (or the VM itself), else PVESIM_GUEST_IMAGE.
func (c *call) guestImage(vmid int) (string, error) {
	ids := []int{vmid}
	if origin, ok := c.origin(vmid); ok {
		ids = append([]int{origin}, ids...)
	}
	for _, id := range ids {
		raw, err := os.ReadFile(c.path("etc/pvesim/images", strconv.Itoa(id)))
		if err == nil && strings.TrimSpace(string(raw)) != "" {
			return strings.TrimSpace(string(raw)), nil
		}
	}
	if c.GuestImage == "" {
		return "", errors.New("PVESIM_GUEST_IMAGE is not set")
	}
	return c.GuestImage, nil
}

// origin returns the template a VM was cloned from (pvesim's own record:
// /etc/pvesim/origin/VMID, so qm config stays clean).
func (c *call) origin(vmid int) (int, bool) {
	raw, err := os.ReadFile(c.originFile(vmid))
	if err != nil {
		return 0, false
	}
	id, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	return id, err == nil
}

func (c *call) originFile(vmid int) string {
	return c.path("etc/pvesim/origin", strconv.Itoa(vmid))
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
