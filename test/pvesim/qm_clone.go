package pvesim

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// snapshotOnlyKeys are the keys a snapshot section adds to a config.
var snapshotOnlyKeys = []string{"snaptime", "vmstate", "snapstate", "runningmachine", "runningcpu"}

func (c *call) qmClone(p *params) error {
	vmid, newid := vmidOf(p, "vmid"), vmidOf(p, "newid")
	src, err := c.readConfig(vmid)
	if errors.Is(err, errNoConfig) {
		return errorf("unable to find configuration file for VM %d on node '%s'", vmid, c.Node)
	}
	if err != nil {
		return err
	}
	if err := checkLock(src, false); err != nil {
		return err
	}
	if _, err := os.Stat(c.confPath(newid)); err == nil {
		return errorf("unable to create VM %d: config file already exists", newid)
	}
	if err := c.reserveOnce(newid); err != nil {
		return err
	}
	base := src.main
	if snap := p.get("snapname"); snap != "" {
		s, ok := src.snaps[snap]
		if !ok {
			return errorf("snapshot '%s' does not exist", snap)
		}
		base = s
	}
	template := src.main["template"] == "1"
	full := p.flag("full", !template)
	if !full && p.has("storage") {
		return badParam("storage", "parameter 'storage' not allowed for linked clones")
	}
	if !full && !template {
		for _, d := range drives(base) {
			if d.isDisk() {
				return errorf("Linked clone feature is not supported for '%s' (%s)", d.volid(), d.key)
			}
		}
	}
	target, err := c.cloneTarget(p, base)
	if err != nil {
		return err
	}
	running, err := c.isRunning(vmid)
	if err != nil {
		return err
	}
	// Parallel clones of a stopped source share its lock.
	lockSrc := c.lockShared
	if running {
		lockSrc = c.lock
	}
	l, err := lockSrc(vmid, c.LockWait, c.stdout)
	if err != nil {
		return err
	}
	defer l.unlock()

	// The temporary config reserves the new id (pmxcfs refuses a second one).
	f, err := os.OpenFile(c.confPath(newid), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return errorf("unable to create VM %d: config file already exists", newid)
		}
		return err
	}
	fmt.Fprint(f, "# qmclone temporary file\nlock: clone\n")
	f.Close()
	err = c.updateVMList(newid)
	if err == nil {
		err = c.cloneFirewall(vmid, newid)
	}
	if err == nil {
		err = c.cloneInto(p, vmid, newid, src, base, full)
	}
	if err == nil && target != "" {
		err = c.moveConfigToNode(newid, target)
	}
	if err != nil {
		os.Remove(c.firewallFile(fmt.Sprintf("%d.fw", newid)))
		c.removeConfig(newid)
		return fmt.Errorf("clone failed: %w", err)
	}
	return nil
}

// cloneFirewall is clone_vmfw_conf: the new VM gets the source's firewall.
func (c *call) cloneFirewall(vmid, newid int) error {
	return c.lockFirewall(newid, func() error {
		dst := c.firewallFile(fmt.Sprintf("%d.fw", newid))
		if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
			return err
		}
		raw, err := os.ReadFile(c.firewallFile(fmt.Sprintf("%d.fw", vmid)))
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return writeFileAtomic(dst, raw, 0o640)
	})
}

func (c *call) cloneInto(p *params, vmid, newid int, src *vmConfig, base map[string]string, full bool) (err error) {
	if len(src.pending) > 0 && p.get("snapname") == "" {
		fmt.Fprintf(c.stdout, "found pending changes for '%s', discarding for clone\n", strings.Join(sortedKeys(src.pending), ","))
	}
	conf := newConfig()
	for k, v := range base {
		if strings.HasPrefix(k, "unused") {
			continue
		}
		conf.main[k] = v
	}
	for _, k := range append([]string{"template", "lock", "parent", "description"}, snapshotOnlyKeys...) {
		delete(conf.main, k)
	}
	conf.main["name"] = p.get("name")
	if conf.main["name"] == "" {
		if n := src.main["name"]; n != "" {
			conf.main["name"] = "Copy-of-VM-" + n
		} else {
			conf.main["name"] = fmt.Sprintf("Copy-of-VM-%d", vmid)
		}
	}
	if d := p.get("description"); d != "" {
		conf.main["description"] = d
	} else if d := base["description"]; d != "" {
		conf.main["description"] = d
	}
	for _, k := range netKeys(conf.main) {
		mac, err := c.randomMAC()
		if err != nil {
			return err
		}
		conf.main[k] = withMAC(conf.main[k], mac)
	}
	if err := c.addIdentity(conf.main, false); err != nil {
		return err
	}
	vols := newVolumes(newid, nil)
	defer func() {
		if err != nil { // clone_vm frees the new disks of a failed clone
			c.freeDisks(newid, conf.main)
		}
	}()
	for _, d := range drives(conf.main) {
		if d.isCdrom() && !d.isCloudinit() {
			continue
		}
		old := d.volid()
		storage, _, _ := strings.Cut(old, ":")
		if s := p.get("storage"); s != "" && full {
			storage = s
		}
		var nv string
		switch {
		case d.isCloudinit():
			fmt.Fprintf(c.stdout, "create full clone of drive %s (%s)\n", d.key, old)
			nv = vols.cloudinit(storage)
		case full:
			fmt.Fprintf(c.stdout, "create full clone of drive %s (%s)\n", d.key, old)
			size, _ := parseSize(d.ps.get("size"))
			fmt.Fprintf(c.stdout, "transferred 0.0 B of %s (0.00%%)\n", renderBytes(size))
			nv = vols.disk(storage, p.get("format"))
			if err := c.cloneDisk(vmid, base, d, nv, true); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "transferred %s of %s (100.00%%)\n", renderBytes(size), renderBytes(size))
		default:
			fmt.Fprintf(c.stdout, "create linked clone of drive %s (%s)\n", d.key, old)
			nv = vols.linked(old)
			if err := c.cloneDisk(vmid, base, d, nv, false); err != nil {
				return err
			}
		}
		d.ps.vals["file"] = nv
		conf.main[d.key] = d.String()
	}
	return c.writeConfig(newid, conf)
}

func (c *call) qmDestroy(p *params) error {
	vmid := vmidOf(p, "vmid")
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return err
	}
	skiplock := p.flag("skiplock", false)
	if err := checkLock(conf, skiplock); err != nil {
		return err
	}
	if conf.main["protection"] == "1" {
		return errorf("can't remove VM %d - protection mode enabled", vmid)
	}
	if running, err := c.isRunning(vmid); err != nil {
		return err
	} else if running {
		return errorf("VM %d is running - destroy failed", vmid)
	}
	return c.withLock(vmid, c.stdout, func() error {
		conf, err := c.loadUnlocked(vmid, skiplock)
		if err != nil {
			return err
		}
		if err := c.checkBaseVolumesUnused(vmid, conf); err != nil {
			return err
		}
		if p.flag("purge", false) {
			fmt.Fprintf(c.stdout, "purging VM %d from related configurations..\n", vmid)
		}
		if err := c.Backend.Remove(c.ctx, c.containerName(vmid)); err != nil {
			return err
		}
		if err := c.freeDisks(vmid, conf.main); err != nil {
			return err
		}
		// Fault switches stay: a test may set them before the VM exists.
		for _, path := range []string{c.seedDir(vmid), c.pidFile(vmid), c.firewallFile(fmt.Sprintf("%d.fw", vmid))} {
			if err := os.RemoveAll(path); err != nil {
				return err
			}
		}
		return c.removeConfig(vmid)
	})
}

// checkBaseVolumesUnused refuses to destroy a template whose base volumes
// linked clones still use.
func (c *call) checkBaseVolumesUnused(vmid int, conf *vmConfig) error {
	var bases []string
	for _, d := range drives(conf.main) {
		if strings.Contains(d.volid(), fmt.Sprintf("base-%d-disk-", vmid)) && d.isDisk() {
			bases = append(bases, d.volid())
		}
	}
	if len(bases) == 0 {
		return nil
	}
	ids, err := c.vmids()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if id == vmid {
			continue
		}
		other, err := c.readConfig(id)
		if err != nil {
			continue
		}
		for _, d := range drives(other.main) {
			for _, b := range bases {
				if strings.HasPrefix(d.volid(), b+"/") {
					return errorf("base volume '%s' is still in use by linked cloned", b)
				}
			}
		}
	}
	return nil
}
