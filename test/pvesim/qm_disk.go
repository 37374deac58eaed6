package pvesim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Disks on create and set (create_disks), qm create, qm disk import and
// qm template.

var (
	// newDiskRE is NEW_DISK_RE: "[<storage>:]<GiB>", a disk to allocate.
	newDiskRE   = regexp.MustCompile(`^(?:([^/:\s]+):)?(\d+(?:\.\d+)?)$`)
	cloudinitVR = regexp.MustCompile(`^([a-zA-Z][\w.-]*):cloudinit$`)
)

const importSyntax = "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"

// checkDriveParams is what create and set check before anything is
// written ($check_drive_param, $check_storage_access): import-from's
// syntax, the storage of a new disk, the type of an import-from volume.
func (c *call) checkDriveParams(params map[string]string) error {
	for _, k := range sortedKeys(params) {
		if !driveKeyRE.MatchString(k) {
			continue
		}
		d := parseDrive(k, params[k])
		file, src := d.volid(), d.ps.get("import-from")
		m := newDiskRE.FindStringSubmatch(file)
		if src != "" && (m == nil || m[2] != "0") {
			return badParam(k, importSyntax)
		}
		if m != nil && !d.isCdrom() {
			st, err := c.storage(m[1])
			if err != nil {
				return err
			}
			if !st.content["images"] {
				return badParam("storage", fmt.Sprintf("storage '%s' does not support vm images", st.id))
			}
		}
		if src == "" {
			continue
		}
		vol, isVol, err := c.parseVolume(src)
		if err != nil {
			return err
		}
		if isVol && vol.vtype != "images" && vol.vtype != "import" {
			return badParam(k, fmt.Sprintf("%s has wrong type '%s' - needs to be 'images' or 'import'", src, vol.vtype))
		}
	}
	return nil
}

// prepareValue completes a config value the way create/set do: new disks
// are allocated or imported (printing the storage lines), NICs get a MAC.
// A disk made for a template is a base volume at once.
func (c *call) prepareValue(key, value string, vols *volumes, template bool, out io.Writer) (string, error) {
	if netKeyRE.MatchString(key) && netMAC(value) == "" {
		mac, err := c.randomMAC()
		if err != nil {
			return "", err
		}
		return withMAC(value, mac), nil
	}
	if !driveKeyRE.MatchString(key) {
		return value, nil
	}
	d := parseDrive(key, value)
	file := d.volid()
	var volid string
	switch m := newDiskRE.FindStringSubmatch(file); {
	case cloudinitVR.MatchString(file):
		volid = vols.cloudinit(cloudinitVR.FindStringSubmatch(file)[1])
		d.ps.set("media", "cdrom")
	case m != nil && m[1] != "" && !d.isCdrom():
		gib, _ := strconv.ParseFloat(m[2], 64)
		size := int64(gib * (1 << 30))
		volid = vols.disk(m[1], d.ps.get("format"))
		if src := d.ps.get("import-from"); src != "" {
			var err error
			if size, err = c.importDisk(src, volid, out); err != nil {
				return "", err
			}
			delete(d.ps.vals, "import-from")
		}
		if template {
			if err := c.convertToBase(vols.vmid, map[string]string{}, []*drive{parseDrive(key, volid)}); err != nil {
				return "", err
			}
			volid = baseName(volid)
		}
		if err := c.recordVolumeSize(volid, size); err != nil {
			return "", err
		}
		delete(d.ps.vals, "format")
		d.ps.vals["size"] = formatSize(size)
	default:
		if d.ps.get("size") == "" {
			if sz, ok := c.volumeSize(file); ok {
				d.ps.vals["size"] = formatSize(sz)
			}
		}
		return printDrive(file, d.ps), nil
	}
	res := printDrive(volid, d.ps)
	fmt.Fprintf(out, "%s: successfully created disk '%s'\n", key, res)
	return res, nil
}

// importDisk is import-from: qemu-img convert of src (an absolute path or
// an import volume) into the new volume volid; it returns the size.
func (c *call) importDisk(src, volid string, out io.Writer) (int64, error) {
	path, err := c.importSource(src)
	if err != nil {
		return 0, err
	}
	info, err := inspectImage(c.path(path))
	if err != nil {
		return 0, err
	}
	if info.virtualSize == 0 {
		return 0, errorf("could not get file size of %s", path)
	}
	fmt.Fprintf(out, "transferred 0.0 B of %s (0.00%%)\n", renderBytes(info.virtualSize))
	if err := c.fillDisk(volid, c.path(path), info); err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "transferred %s of %s (100.00%%)\n", renderBytes(info.virtualSize), renderBytes(info.virtualSize))
	return info.virtualSize, nil
}

// fillDisk gives volume volid the content of an image file; raw data
// leaves it without a root file system.
func (c *call) fillDisk(volid, path string, info imageInfo) error {
	if !info.bootable() {
		return nil
	}
	return c.disks().ImportDisk(c.ctx, c.diskRef(volid), path)
}

// importSource resolves import-from to a file on the node: an absolute
// path (abs_filesystem_path) or an import volume, checked the way an
// untrusted image is.
func (c *call) importSource(src string) (string, error) {
	vol, isVol, err := c.parseVolume(src)
	if err != nil {
		return "", err
	}
	if !isVol {
		if st, err := os.Stat(c.path(src)); err != nil || !st.Mode().IsRegular() {
			return "", errorf("can't find file '%s'", src)
		}
		return src, nil
	}
	if vol.vtype != "import" {
		return "", errorf("cannot import from '%s' - pvesim does not copy VM disk volumes", src)
	}
	path, err := vol.filePath()
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(c.path(path)); err != nil || !st.Mode().IsRegular() {
		return "", errorf("failed to stat '%s'", path)
	}
	if err := checkImageFormat(c.path(path), path, vol.format); err != nil {
		return "", err
	}
	return path, nil
}

// printDrive is print_drive: the volume first, then the options sorted.
func printDrive(volid string, ps *propString) string {
	parts := []string{volid}
	for _, k := range sortedKeys(ps.vals) {
		if k != "file" {
			parts = append(parts, k+"="+ps.vals[k])
		}
	}
	return strings.Join(parts, ",")
}

// renderBytes is PVE's render_bytes: "2.2 GiB".
func renderBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// Volume sizes pvesim knows of (allocated and imported disks), for
// attaching them later and for resizing a disk whose entry has no size.

func (s *Sim) volumeSizesFile() string { return s.path("var/lib/pvesim/volumes") }

func (s *Sim) volumeSize(volid string) (int64, bool) {
	raw, err := os.ReadFile(s.volumeSizesFile())
	if err != nil {
		return 0, false
	}
	var size int64
	found := false
	for _, line := range strings.Split(string(raw), "\n") {
		if id, sz, ok := strings.Cut(line, " "); ok && id == volid {
			if n, err := strconv.ParseInt(sz, 10, 64); err == nil {
				size, found = n, true // the last record wins
			}
		}
	}
	return size, found
}

func (s *Sim) recordVolumeSize(volid string, size int64) error {
	f, err := os.OpenFile(s.volumeSizesFile(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(s.path("var/lib/pvesim"), 0o755); err != nil {
			return err
		}
		f, err = os.OpenFile(s.volumeSizesFile(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %d\n", volid, size)
	return err
}

// preFork marks an error of the checks a worker command makes before it
// forks its task: reported like a direct command's (qm template's exit
// status is not 0 for these).
type preFork struct{ err error }

func (e *preFork) Error() string { return e.err.Error() }
func (e *preFork) Unwrap() error { return e.err }

func (c *call) qmCreate(p *params) error {
	vmid := vmidOf(p, "vmid")
	params := configParams(p)
	if err := c.checkDriveParams(params); err != nil {
		return err
	}
	if err := c.prepareSecrets(params, params["ostype"]); err != nil {
		return &preFork{fmt.Errorf("unable to create VM %d - %w", vmid, err)}
	}
	if err := c.createAndLock(vmid); err != nil {
		return &preFork{err}
	}
	l, err := c.lock(vmid, c.LockWait/10, c.stdout)
	if err == nil {
		err = c.createLocked(vmid, params)
		l.unlock()
	}
	if err != nil {
		// The task removes what it made; a killed one leaves "lock: create".
		c.removeConfig(vmid)
		return fmt.Errorf("unable to create VM %d - %w", vmid, err)
	}
	if !p.flag("start", false) {
		return nil
	}
	fmt.Fprintln(c.stdout, "Execute autostart")
	return c.withLock(vmid, c.stdout, func() error { return c.startLocked(vmid, false) })
}

// createAndLock is create_and_lock_config: it reserves the id with a
// config that holds only "lock: create" (5 s flock wait).
func (c *call) createAndLock(vmid int) error {
	l, err := c.lock(vmid, c.LockWait/2, c.stderr)
	if err != nil {
		return fmt.Errorf("unable to create VM %d - %w", vmid, err)
	}
	defer l.unlock()
	// check_vmid_unused: a VMID is the cluster's, whichever node has it.
	if owner, err := c.ownerOf(vmid); err != nil {
		return err
	} else if owner != "" {
		return errorf("unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, owner)
	}
	conf := newConfig()
	conf.main["lock"] = "create"
	return c.writeConfig(vmid, conf)
}

// createLocked is the create task: disks first (freed again on failure),
// then the whole config, which replaces the "lock: create" one.
func (c *call) createLocked(vmid int, params map[string]string) error {
	conf := newConfig()
	vols := newVolumes(vmid, nil)
	for _, k := range sortedKeys(params) {
		v, err := c.prepareValue(k, params[k], vols, params["template"] == "1", c.stdout)
		if err != nil {
			c.freeDisks(vmid, conf.main)
			return err
		}
		conf.main[k] = v
	}
	if err := c.addIdentity(conf.main, true); err != nil {
		return err
	}
	if _, ok := conf.main["boot"]; !ok {
		if order := defaultBootOrder(conf.main); order != "" {
			conf.main["boot"] = "order=" + order
		}
	}
	conf.main["meta"] = fmt.Sprintf("creation-qemu=9.0.2,ctime=%d", c.Now().Unix())
	return c.writeConfig(vmid, conf)
}

// qmTemplate checks before the fork and again in the task; only the
// task's failures leave qm's exit status at 0. template: 1 is written
// before the disks become base volumes.
func (c *call) qmTemplate(p *params) error {
	vmid := vmidOf(p, "vmid")
	only := p.get("disk")
	check := func() (*vmConfig, error) {
		conf, err := c.loadUnlocked(vmid, false)
		if err != nil {
			return nil, err
		}
		if len(conf.snaps) > 0 {
			return nil, errorf("unable to create template, because VM contains snapshots")
		}
		if conf.main["template"] == "1" && only == "" {
			return nil, errorf("you can't convert a template to a template")
		}
		if running, err := c.isRunning(vmid); err != nil {
			return nil, err
		} else if running {
			return nil, errorf("you can't convert a VM to template if VM is running")
		}
		return conf, nil
	}
	if _, err := check(); err != nil {
		return &preFork{err}
	}
	return c.withLock(vmid, c.stdout, func() error {
		conf, err := check()
		if err != nil {
			return err
		}
		conf.main["template"] = "1"
		if err := c.writeConfig(vmid, conf); err != nil {
			return err
		}
		var disks []*drive
		for _, d := range drives(conf.main) {
			if d.isDisk() && (only == "" || d.key == only) {
				disks = append(disks, d)
			}
		}
		if err := c.convertToBase(vmid, conf.main, disks); err != nil {
			return err
		}
		// A template does not run: its guest's writes are in the base volume now.
		if err := c.Backend.Remove(c.ctx, c.containerName(vmid)); err != nil {
			return err
		}
		for _, d := range disks {
			d.ps.vals["file"] = baseName(d.volid())
			conf.main[d.key] = d.String()
		}
		return c.writeConfig(vmid, conf)
	})
}

// qmImportDisk is qm disk import (direct): the image becomes a new volume,
// attached as the next unusedN or at --target-disk (a base volume on a
// template).
func (c *call) qmImportDisk(p *params) error {
	vmid := vmidOf(p, "vmid")
	src, storageID, key := p.get("source"), p.get("storage"), p.get("target-disk")
	if key != "" && !driveKeyRE.MatchString(key) {
		key = ""
	}
	conf, err := c.loadUnlocked(vmid, false)
	if err != nil {
		return err
	}
	if st, err := os.Stat(c.path(src)); err != nil || !st.Mode().IsRegular() {
		return errorf("%s: non-existent or non-regular file", src)
	}
	st, err := c.storage(storageID)
	if err != nil {
		return err
	}
	if !st.content["images"] {
		return errorf("storage %s does not support vm images", storageID)
	}
	fmt.Fprintf(c.stdout, "importing disk '%s' to VM %d ...\n", src, vmid)
	info, err := inspectImage(c.path(src))
	if err != nil {
		return err
	}
	format := p.get("format")
	if format != "" && !isDirStorage(storageID) && format != "raw" {
		fmt.Fprintf(c.stderr, "format '%s' is not supported by the target storage - using 'raw' instead\n", format)
		format = ""
	}
	volid := newVolumes(vmid, conf.withPending()).disk(storageID, format)
	fmt.Fprintf(c.stdout, "transferred 0.0 B of %s (0.00%%)\n", renderBytes(info.virtualSize))
	if err := c.fillDisk(volid, c.path(src), info); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "transferred %s of %s (100.00%%)\n", renderBytes(info.virtualSize), renderBytes(info.virtualSize))
	if err := c.recordVolumeSize(volid, info.virtualSize); err != nil {
		return err
	}
	return c.withLock(vmid, c.stderr, func() error {
		conf, err := c.loadUnlocked(vmid, false)
		if err == nil && key != "" && conf.main[key] != "" {
			err = errorf("cowardly refusing to overwrite existing entry: %s", key)
		}
		if err != nil {
			c.disks().RemoveDisk(c.ctx, c.diskRef(volid))
			return err
		}
		if key == "" {
			for i := 0; ; i++ {
				key = fmt.Sprintf("unused%d", i)
				if _, used := conf.main[key]; !used {
					break
				}
			}
		} else if conf.main["template"] == "1" {
			if err := c.convertToBase(vmid, map[string]string{}, []*drive{parseDrive(key, volid)}); err != nil {
				return err
			}
			volid = baseName(volid)
		}
		conf.main[key] = volid
		if err := c.writeConfig(vmid, conf); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s: successfully imported disk '%s'\n", key, volid)
		return nil
	})
}
