package pvesim

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

func (c *call) qmStart(p *params) error {
	vmid := vmidOf(p, "vmid")
	return c.withLock(vmid, c.stdout, func() error { return c.startLocked(vmid, p.flag("skiplock", false)) })
}

// startLocked is vm_start under the flock: checks, pending changes,
// cloud-init seed, then the guest container.
func (c *call) startLocked(vmid int, skiplock bool) error {
	conf, err := c.loadUnlocked(vmid, skiplock)
	if err != nil {
		return err
	}
	if conf.main["template"] == "1" {
		return errorf("you can't start a vm if it's a template")
	}
	if running, err := c.isRunning(vmid); err != nil {
		return err
	} else if running {
		return errorf("VM %d already running", vmid)
	}
	if len(conf.pending) > 0 {
		for _, k := range conf.pendingDeletes() {
			delete(conf.main, k)
		}
		conf.applyPending()
		if err := c.writeConfig(vmid, conf); err != nil {
			return err
		}
	}
	if err := c.generateCloudinit(vmid, conf); err != nil {
		return err
	}
	g, err := c.guestSpec(vmid, conf.main)
	if err != nil {
		return fmt.Errorf("start failed: %w", err)
	}
	if err := c.Backend.Start(c.ctx, g); err != nil {
		return fmt.Errorf("start failed: %w", err)
	}
	st, err := c.Backend.State(c.ctx, g.Name)
	if err != nil {
		return fmt.Errorf("start failed: %w", err)
	}
	if !st.Running {
		return errorf("start failed: QEMU exited with code 1")
	}
	pid := st.PID
	if c.Procs != nil {
		if pid, err = c.Procs.Spawn(c.kvmArgs(vmid, conf.main)); err != nil {
			return fmt.Errorf("start failed: %w", err)
		}
	}
	return writeFileAtomic(c.pidFile(vmid), []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// generateCloudinit renders the NoCloud seed when the VM has a cloud-init
// drive (and clears the record of changed values); without one the guest
// gets an empty seed.
func (c *call) generateCloudinit(vmid int, conf *vmConfig) error {
	if !hasCloudinitDrive(conf.main) {
		return c.clearSeed(vmid)
	}
	sd, err := c.renderSeed(conf.main, vmid)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "generating cloud-init ISO")
	if err := c.writeSeed(vmid, sd); err != nil {
		return err
	}
	if len(conf.cloudinit) > 0 {
		conf.cloudinit = map[string]string{}
		return c.writeConfig(vmid, conf)
	}
	return nil
}

func (c *call) qmStop(p *params) error {
	vmid := vmidOf(p, "vmid")
	return c.withLock(vmid, c.stdout, func() error {
		conf, err := c.readConfig(vmid)
		if errors.Is(err, errNoConfig) {
			return errorf("unable to find configuration file for VM %d on node '%s'", vmid, c.Node)
		}
		if err != nil {
			return err
		}
		if err := checkLock(conf, p.flag("skiplock", false)); err != nil {
			return err
		}
		return c.hardStop(vmid)
	})
}

// hardStop is qm stop: an already stopped VM is no error.
func (c *call) hardStop(vmid int) error {
	running, err := c.isRunning(vmid)
	if err != nil || !running {
		return err
	}
	if err := c.Backend.Kill(c.ctx, c.containerName(vmid)); err != nil {
		return err
	}
	return c.stopped(vmid)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (c *call) qmShutdown(p *params) error {
	vmid := vmidOf(p, "vmid")
	conf, err := c.readConfig(vmid)
	if errors.Is(err, errNoConfig) {
		msg := fmt.Sprintf("unable to find configuration file for VM %d on node '%s'", vmid, c.Node)
		fmt.Fprintf(c.stderr, "%s\n\n", msg)
		return errorf("%s", msg)
	}
	if err != nil {
		return err
	}
	running, err := c.isRunning(vmid)
	if err != nil {
		return err
	}
	if !running {
		// The pre-check only warns; the task itself has nothing to do.
		fmt.Fprintf(c.stderr, "VM %d not running\n\n", vmid)
		return nil
	}
	if err := checkLock(conf, p.flag("skiplock", false)); err != nil {
		return err
	}
	return c.withLock(vmid, c.stdout, func() error {
		return c.shutdown(vmid, conf, time.Duration(p.num("timeout", 60))*time.Second, p.flag("forceStop", false))
	})
}

// shutdown asks the guest to power off and waits; the guest agent is
// pinged first when configured, as vm_shutdown does before guest-shutdown.
func (c *call) shutdown(vmid int, conf *vmConfig, timeout time.Duration, force bool) error {
	if agentEnabled(conf.main) {
		if r, err := c.qga(vmid, "guest-ping", nil, c.PingTimeout); err != nil {
			fmt.Fprintf(c.stdout, "QEMU Guest Agent is not running - %v\n", err)
		} else if r.Error != nil {
			fmt.Fprintf(c.stdout, "QEMU Guest Agent is not running - %s\n", r.Error.Desc)
		}
	}
	err := c.Backend.Shutdown(c.ctx, c.containerName(vmid), timeout)
	if errors.Is(err, ErrShutdownTimeout) {
		if !force {
			return errorf("VM quit/powerdown failed - got timeout")
		}
		fmt.Fprintln(c.stdout, "VM still running - terminating now with SIGTERM")
		err = c.Backend.Kill(c.ctx, c.containerName(vmid))
	}
	if err != nil {
		return err
	}
	return c.stopped(vmid)
}

func (c *call) qmReboot(p *params) error {
	vmid := vmidOf(p, "vmid")
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return err
	}
	if running, err := c.isRunning(vmid); err != nil {
		return err
	} else if !running {
		fmt.Fprintf(c.stderr, "VM %d not running\n\n", vmid)
		return errorf("VM %d not running", vmid)
	}
	if err := checkLock(conf, false); err != nil {
		return err
	}
	return c.withLock(vmid, c.stdout, func() error {
		if err := c.shutdown(vmid, conf, time.Duration(p.num("timeout", 60))*time.Second, false); err != nil {
			return err
		}
		return c.startLocked(vmid, false)
	})
}

func (c *call) qmWait(p *params) error {
	vmid := vmidOf(p, "vmid")
	if _, err := c.readConfig(vmid); errors.Is(err, errNoConfig) {
		return errorf("unable to find configuration file for VM %d on node '%s'", vmid, c.Node)
	}
	run, err := c.runState(vmid)
	if err != nil || !run.running {
		return err
	}
	fmt.Fprintf(c.stdout, "waiting until VM %d stops (PID %d)\n", vmid, run.pid)
	timeout := p.num("timeout", 0)
	for count := int64(0); timeout == 0 || count < timeout; count++ {
		if running, err := c.isRunning(vmid); err != nil || !running {
			return err
		}
		if err := sleep(c.ctx, time.Second); err != nil {
			return err
		}
	}
	if running, err := c.isRunning(vmid); err != nil || !running {
		return err
	}
	return errorf("wait failed - got timeout")
}

func (c *call) qmCloudinitUpdate(p *params) error {
	vmid := vmidOf(p, "vmid")
	return c.withLock(vmid, c.stderr, func() error {
		conf, err := c.loadUnlocked(vmid, false)
		if err != nil {
			return err
		}
		if !hasCloudinitDrive(conf.main) {
			return nil
		}
		return c.generateCloudinit(vmid, conf)
	})
}
