package pvesim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A running VM on Proxmox is a QEMU process: /var/run/qemu-server/VMID.pid
// holds its pid and its command line is kvm's, with -pidfile naming that
// file (PVE::QemuServer::Helpers::vm_running_locally). pvesim's VMs are
// containers whose processes the node cannot see, so each running VM gets a
// stand-in on the node: the pvesim binary started as /usr/bin/kvm with
// QEMU's arguments, living as long as the VM's container runs. Whoever
// reads the node's files the way Proxmox does finds what they would find
// on a real node.

// Procs starts and stops the stand-ins.
type Procs interface {
	// Spawn starts argv (argv[0] is the program name it shows) detached
	// from the calling command and returns its pid.
	Spawn(argv []string) (int, error)
	// Stop ends the stand-in pid, if it still is the one of pidfile.
	Stop(pid int, pidfile string) error
}

// kvmArgs is the command line of VM vmid's QEMU, the part of it Proxmox
// itself reads back (config_to_command): -id, -name, the agent's chardev,
// -pidfile and -daemonize.
func (c *call) kvmArgs(vmid int, conf map[string]string) []string {
	id := strconv.Itoa(vmid)
	name := conf["name"]
	if name == "" {
		name = "VM" + id
	}
	argv := []string{"/usr/bin/kvm", "-id", id, "-name", name + ",debug-threads=on", "-no-shutdown",
		"-chardev", "socket,id=qmp,path=" + c.path("var/run/qemu-server", id+".qmp") + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control"}
	if agentEnabled(conf) {
		argv = append(argv, "-chardev", "socket,path="+c.qgaSocket(vmid)+",server=on,wait=off,id=qga0",
			"-device", "virtio-serial,id=qga0,bus=pci.0,addr=0x8",
			"-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0")
	}
	return append(argv, "-pidfile", c.pidFile(vmid), "-daemonize")
}

// stopped ends a VM's stand-in and removes its pid file, as vm_stop_cleanup
// does once QEMU is gone.
func (c *call) stopped(vmid int) error {
	if c.Procs != nil {
		if raw, err := os.ReadFile(c.pidFile(vmid)); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
				if err := c.Procs.Stop(pid, c.pidFile(vmid)); err != nil {
					return err
				}
			}
		}
	}
	return removeIfExists(c.pidFile(vmid))
}

// nodeProcs are real stand-ins: this program again, under kvm's name.
type nodeProcs struct{ exe string }

func (p nodeProcs) Spawn(argv []string) (int, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	// Its own session, and nothing of the calling command's streams: the
	// SSH session that ran qm start ends when qm does.
	cmd := &exec.Cmd{Path: p.exe, Args: argv, Stdin: null, Stdout: null, Stderr: null,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start kvm: %w", err)
	}
	pid := cmd.Process.Pid
	return pid, cmd.Process.Release()
}

func (nodeProcs) Stop(pid int, pidfile string) error {
	if !isStandIn(pid, pidfile) {
		return nil // gone, or the pid is someone else's by now
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop kvm %d: %w", pid, err)
	}
	for i := 0; i < 50 && isStandIn(pid, pidfile); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// isStandIn reports whether pid runs kvm with -pidfile pidfile and is not a
// zombie.
func isStandIn(pid int, pidfile string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	found := false
	for i := 0; i+1 < len(argv); i++ {
		found = found || argv[i] == "-pidfile" && argv[i+1] == pidfile
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || !found || !strings.HasSuffix(argv[0], "kvm") {
		return false
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// kvm is the stand-in itself (`kvm -id VMID …`): it waits until the VM's
// container no longer runs, or until it is stopped.
func (c *call) kvm(args []string) error {
	vmid := 0
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-id" {
			vmid, _ = strconv.Atoi(args[i+1])
		}
	}
	if vmid <= 0 {
		return errorf("kvm: no -id")
	}
	name := c.containerName(vmid)
	if w, ok := c.Backend.(interface {
		Wait(ctx context.Context, name string) error
	}); ok {
		return w.Wait(c.ctx, name)
	}
	for {
		st, err := c.Backend.State(c.ctx, name)
		if err != nil || !st.Running {
			return err
		}
		if err := sleep(c.ctx, 2*time.Second); err != nil {
			return nil
		}
	}
}
