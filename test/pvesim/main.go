package pvesim

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sim is one simulated Proxmox node. Its fields are settings; it keeps no
// state of its own: everything lives in files under Root, like on a node.
type Sim struct {
	Root       string // "/" on a rig node; a temp dir in unit tests
	Node       string // node name (PVESIM_NODE)
	HostDir    string // the rig folder as the Docker host sees it (PVESIM_HOST_DIR)
	Network    string // Docker network of the rig (PVESIM_NETWORK)
	GuestImage string // default guest image (PVESIM_GUEST_IMAGE)
	RigID      string // names containers phoenix-rig-<id>-vm-<vmid> (PVESIM_RIG_ID)
	// Unprivileged: the engine refuses --privileged (PVESIM_PRIVILEGED=false),
	// guests get CAP_SYS_ADMIN instead.
	Unprivileged bool

	Backend Backend // where VMs run
	// Procs runs the node's stand-ins of VMs' QEMU processes (kvm.go);
	// nil: the pid file holds the guest container's pid.
	Procs Procs
	// Disks keeps the VMs' disks; nil: disks hold nothing and every VM
	// boots PVESIM_GUEST_IMAGE (a node used only for agent tests).
	Disks Disks

	// PID and PStart (start time in clock ticks since boot) of this
	// process, for task ids and temporary file names.
	PID    int
	PStart int64

	Now          func() time.Time
	Location     *time.Location // for snapshot times; local time on a node
	Rand         io.Reader      // MACs, UUIDs, salts, sync ids
	LockWait     time.Duration  // flock wait of most operations (10 s)
	PingTimeout  time.Duration  // guest-ping of the agent check (3 s)
	AgentTimeout time.Duration  // other agent commands (5 s)
	PollInterval time.Duration  // guest exec status polling (1 s)
}

// Main is the pvesim program: qm, pvesh or pvesim by the name it was
// called under. env holds KEY=VALUE entries of the process environment.
func Main(ctx context.Context, argv0 string, args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) int {
	s := FromEnv(env)
	d, err := NewDocker(s.Unprivileged)
	if err != nil {
		return report(stderr, err)
	}
	s.Backend, s.Disks = d, d
	exe, err := os.Executable()
	if err != nil {
		return report(stderr, err)
	}
	s.Procs = nodeProcs{exe: exe}
	return s.Run(ctx, argv0, args, stdin, stdout, stderr)
}

// FromEnv builds a Sim from the environment and /etc/pvesim/env below
// PVESIM_ROOT (the process environment wins: sshd sessions do not inherit
// the node container's environment, so the rig writes that file).
func FromEnv(env []string) *Sim {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	root := vars["PVESIM_ROOT"]
	if root == "" {
		root = "/"
	}
	fileVars := readEnvFile(filepath.Join(root, "etc/pvesim/env"))
	get := func(k, def string) string {
		if v, ok := vars[k]; ok && v != "" {
			return v
		}
		if v, ok := fileVars[k]; ok && v != "" {
			return v
		}
		return def
	}
	return &Sim{
		Root:         root,
		Node:         get("PVESIM_NODE", "pve"),
		HostDir:      get("PVESIM_HOST_DIR", ""),
		Network:      get("PVESIM_NETWORK", ""),
		GuestImage:   get("PVESIM_GUEST_IMAGE", ""),
		RigID:        get("PVESIM_RIG_ID", "0"),
		Unprivileged: func() bool { b, ok := parseBool(get("PVESIM_PRIVILEGED", "1")); return ok && b == "0" }(),
		PID:          os.Getpid(),
		PStart:       processStart(),
		Now:          time.Now,
		Location:     time.Local,
		Rand:         rand.Reader,
		LockWait:     10 * time.Second,
		PingTimeout:  3 * time.Second,
		AgentTimeout: 5 * time.Second,
		PollInterval: time.Second,
	}
}

func readEnvFile(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// path joins a node path below Root.
func (s *Sim) path(parts ...string) string {
	return filepath.Join(append([]string{s.Root}, parts...)...)
}

// call is one invocation: the Sim plus its standard streams.
type call struct {
	*Sim
	kind   kind // of the running qm command
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Run executes one command line and returns its exit code.
func (s *Sim) Run(ctx context.Context, argv0 string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &call{Sim: s, ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	prog := filepath.Base(argv0)
	if prog == "kvm" {
		return report(stderr, c.kvm(args)) // a VM's stand-in: no qm call
	}
	if err := s.layout(); err != nil {
		return report(stderr, err)
	}
	if prog != "qm" && prog != "pvesh" {
		if len(args) == 0 {
			fmt.Fprintln(stderr, "usage: pvesim qm|pvesh ARGS... | pvesim hold-lock VMID SECONDS")
			return 2
		}
		prog, args = args[0], args[1:]
	}
	c.countCall(prog, args)
	if err := c.latency(); err != nil {
		return report(stderr, err)
	}
	switch prog {
	case "qm":
		return c.qm(args)
	case "pvesh":
		return c.pvesh(args)
	case "hold-lock":
		return report(stderr, c.holdLock(args))
	}
	fmt.Fprintf(stderr, "pvesim: unknown program %q (want qm, pvesh or hold-lock)\n", prog)
	return 2
}

// latency models qm's Perl start-up cost: /etc/pvesim/latency_ms.
func (c *call) latency() error {
	raw, err := os.ReadFile(c.path("etc/pvesim/latency_ms"))
	if err != nil {
		return nil
	}
	ms, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || ms <= 0 {
		return nil
	}
	return sleep(c.ctx, time.Duration(ms)*time.Millisecond)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// holdLock is `pvesim hold-lock VMID SECONDS`: it holds the VM's flock so
// tests can watch qm wait for it and time out.
func (c *call) holdLock(args []string) error {
	if len(args) != 2 {
		return errorf("usage: pvesim hold-lock VMID SECONDS")
	}
	vmid, err := strconv.Atoi(args[0])
	if err != nil || !vmidRE.MatchString(args[0]) {
		return errorf("hold-lock: bad VMID %q", args[0])
	}
	secs, err := strconv.Atoi(args[1])
	if err != nil || secs < 0 {
		return errorf("hold-lock: bad SECONDS %q", args[1])
	}
	l, err := c.lock(vmid, c.LockWait, c.stderr)
	if err != nil {
		return err
	}
	defer l.unlock()
	fmt.Fprintf(c.stdout, "holding lock-%d.conf for %ds\n", vmid, secs)
	return sleep(c.ctx, time.Duration(secs)*time.Second)
}

// processStart is field 22 of /proc/self/stat (0 where there is none).
func processStart() int64 {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields count after it.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseInt(f[19], 10, 64)
	return n
}
