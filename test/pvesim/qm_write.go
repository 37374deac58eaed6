package pvesim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// nonConfigParams are parameters of create/set that are not config keys.
var nonConfigParams = map[string]bool{
	"vmid": true, "delete": true, "revert": true, "digest": true, "skiplock": true, "force": true,
	"archive": true, "storage": true, "start": true, "pool": true, "unique": true, "live-restore": true, "bwlimit": true,
}

// configParams returns the config options given on the command line.
func configParams(p *params) map[string]string {
	out := map[string]string{}
	for k, v := range p.vals {
		if !nonConfigParams[k] {
			out[k] = v
		}
	}
	return out
}

const sshkeysMax = 1 << 20

// readParamFile is qm's file mapping for --sshkeys: the option names a
// file on the node; /dev/stdin reads qm's standard input.
func (c *call) readParamFile(path string) (string, error) {
	var r io.Reader
	if path == "/dev/stdin" || path == "-" {
		r = c.stdin
	} else {
		f, err := os.Open(c.path(path))
		if err != nil {
			return "", fmt.Errorf("can't open '%s' - %s", path, syscallText(err))
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, sshkeysMax+1))
	if err != nil {
		return "", fmt.Errorf("can't read '%s' - %w", path, err)
	}
	if len(raw) > sshkeysMax {
		return "", fmt.Errorf("file '%s' too long - aborting", path)
	}
	return string(raw), nil
}

var sshKeyTypeRE = regexp.MustCompile(`^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$`)

// validateSSHKeys is a light PVE::Tools::validate_ssh_public_keys.
func validateSSHKeys(keys string) error {
	for _, line := range strings.Split(keys, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 2 || !sshKeyTypeRE.MatchString(f[0]) {
			return errors.New("SSH public key validation error")
		}
	}
	return nil
}

// prepareSecrets turns --sshkeys FILE into the URL-encoded content and
// --cipassword into a crypt hash, as qm's parameter mapping and the API do.
func (c *call) prepareSecrets(params map[string]string, ostype string) error {
	if path, ok := params["sshkeys"]; ok {
		keys, err := c.readParamFile(path)
		if err != nil {
			return err
		}
		if err := validateSSHKeys(keys); err != nil {
			return err
		}
		params["sshkeys"] = uriEscape(keys)
	}
	if pw, ok := params["cipassword"]; ok {
		if pw == "" {
			// No value and no TTY: two matching lines from stdin.
			sc := bufio.NewScanner(c.stdin)
			var lines []string
			for len(lines) < 2 && sc.Scan() {
				lines = append(lines, sc.Text())
			}
			if len(lines) < 2 || lines[0] != lines[1] {
				return errors.New("passwords do not match")
			}
			pw = lines[0]
		}
		if !isCrypted(pw) && !strings.HasPrefix(ostype, "w") {
			h, err := c.encryptPassword(pw)
			if err != nil {
				return err
			}
			pw = h
		}
		params["cipassword"] = pw
	}
	return nil
}

var (
	allocRE     = regexp.MustCompile(`^([a-zA-Z][\w.-]*):(\d+(?:\.\d+)?)$`)
	cloudinitVR = regexp.MustCompile(`^([a-zA-Z][\w.-]*):cloudinit$`)
)

// prepareValue completes a config value the way create/set do: new disks
// are allocated (printing the storage line), NICs get a MAC.
func (c *call) prepareValue(key, value string, vols *volumes, out io.Writer) (string, error) {
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
	var size int64
	var volid string
	switch {
	case cloudinitVR.MatchString(file):
		volid = vols.cloudinit(cloudinitVR.FindStringSubmatch(file)[1])
		d.ps.set("media", "cdrom")
	case allocRE.MatchString(file):
		m := allocRE.FindStringSubmatch(file)
		gib, _ := strconv.ParseFloat(m[2], 64)
		size = int64(gib * (1 << 30))
		if src := d.ps.get("import-from"); src != "" {
			st, err := os.Stat(c.path(src))
			if err != nil {
				return "", fmt.Errorf("%s: import-from: '%s' does not exist", key, src)
			}
			size = st.Size()
			fmt.Fprintf(out, "transferred %s of %s (100.00%%)\n", renderBytes(size), renderBytes(size))
			delete(d.ps.vals, "import-from")
		}
		volid = vols.disk(m[1], d.ps.get("format"))
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

// Volume sizes pvesim knows of (imported disks), for attaching them later.

func (s *Sim) volumeSizesFile() string { return s.path("var/lib/pvesim/volumes") }

func (s *Sim) volumeSize(volid string) (int64, bool) {
	raw, err := os.ReadFile(s.volumeSizesFile())
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if id, size, ok := strings.Cut(line, " "); ok && id == volid {
			n, err := strconv.ParseInt(size, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
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

func (c *call) qmSet(p *params) error {
	vmid := vmidOf(p, "vmid")
	params := configParams(p)
	deletes := splitList(p.get("delete"))
	reverts := splitList(p.get("revert"))
	if len(params) == 0 && len(deletes) == 0 && len(reverts) == 0 {
		return errorf("no options specified")
	}
	for _, k := range deletes {
		if _, ok := params[k]; ok {
			return badParam("delete", fmt.Sprintf("you can't use '-%s' and -delete %s' at the same time", k, k))
		}
	}
	return c.withLock(vmid, c.stderr, func() error {
		conf, err := c.loadConfig(vmid)
		if err != nil {
			return err
		}
		if d := p.get("digest"); d != "" && d != conf.digest {
			return errorf("checksum mismatch (file change by other user?)")
		}
		if err := checkLock(conf, p.flag("skiplock", false)); err != nil {
			return err
		}
		if err := c.prepareSecrets(params, conf.main["ostype"]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "update VM %d: %s\n", vmid, logParams(params, p.get("delete"), p.get("revert")))
		running, err := c.isRunning(vmid)
		if err != nil {
			return err
		}
		if err := c.applySet(vmid, conf, params, deletes, reverts, running); err != nil {
			return err
		}
		return c.writeConfig(vmid, conf)
	})
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// logParams is the "update VM" log line: options sorted, password hidden.
func logParams(params map[string]string, del, revert string) string {
	all := cloneMap(params)
	if del != "" {
		all["delete"] = del
	}
	if revert != "" {
		all["revert"] = revert
	}
	var parts []string
	for _, k := range sortedKeys(all) {
		v := all[k]
		if k == "cipassword" {
			v = "<hidden>"
		}
		parts = append(parts, "-"+k, v)
	}
	return strings.Join(parts, " ")
}

// applySet changes conf like update_vm_api: values go to [PENDING]; a
// stopped VM then gets all pending changes applied, a running one only
// those that can be hot-plugged (cloud-init, name, onboot, NICs, ...).
func (c *call) applySet(vmid int, conf *vmConfig, params map[string]string, deletes, reverts []string, running bool) error {
	vols := newVolumes(vmid, conf.withPending())
	ci := hasCloudinitDrive(conf.main)
	remember := func(k string) {
		if !ci || !(cloudinitKeys[k] || strings.HasPrefix(k, "ipconfig")) {
			return
		}
		if _, done := conf.cloudinit[k]; done {
			return
		}
		if old, ok := conf.main[k]; ok {
			conf.cloudinit[k] = old
		}
	}
	for _, k := range reverts {
		delete(conf.pending, k)
		conf.setPendingDeletes(without(conf.pendingDeletes(), k))
	}
	pendingDel := conf.pendingDeletes()
	for _, k := range deletes {
		_, inMain := conf.main[k]
		_, inPending := conf.pending[k]
		if !inMain && !inPending {
			fmt.Fprintf(c.stderr, "cannot delete '%s' - not set in current configuration!\n", k)
			continue
		}
		delete(conf.pending, k)
		if running && !isHotKey(k) {
			pendingDel = append(without(pendingDel, k), k)
			continue
		}
		remember(k)
		c.deleteKey(conf, k, vols)
	}
	conf.setPendingDeletes(pendingDel)
	for _, k := range sortedKeys(params) {
		v, err := c.prepareValue(k, params[k], vols, c.stdout)
		if err != nil {
			return err
		}
		conf.setPendingDeletes(without(conf.pendingDeletes(), k))
		if running && !isHotKey(k) {
			conf.pending[k] = v
			continue
		}
		delete(conf.pending, k)
		remember(k)
		conf.main[k] = v
	}
	if !running {
		for _, k := range conf.pendingDeletes() {
			c.deleteKey(conf, k, vols)
		}
		conf.applyPending()
	}
	return nil
}

// deleteKey removes an option; a deleted disk becomes an unused volume.
func (c *call) deleteKey(conf *vmConfig, k string, vols *volumes) {
	v, ok := conf.main[k]
	delete(conf.main, k)
	if !ok || !driveKeyRE.MatchString(k) {
		return
	}
	d := parseDrive(k, v)
	if !d.isDisk() {
		return
	}
	for i := 0; ; i++ {
		key := fmt.Sprintf("unused%d", i)
		if _, used := conf.main[key]; !used {
			conf.main[key] = d.volid()
			return
		}
	}
}

func without(list []string, k string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != k {
			out = append(out, x)
		}
	}
	return out
}

func (c *call) qmCreate(p *params) error {
	vmid := vmidOf(p, "vmid")
	if _, err := os.Stat(c.confPath(vmid)); err == nil {
		return errorf("unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, c.Node)
	}
	l, err := c.lock(vmid, c.LockWait/2, c.stdout)
	if err != nil {
		return fmt.Errorf("unable to create VM %d - %w", vmid, err)
	}
	err = func() error {
		defer l.unlock()
		if _, err := os.Stat(c.confPath(vmid)); err == nil {
			return errorf("unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, c.Node)
		}
		params := configParams(p)
		if err := c.prepareSecrets(params, params["ostype"]); err != nil {
			return fmt.Errorf("unable to create VM %d - %w", vmid, err)
		}
		conf := newConfig()
		vols := newVolumes(vmid, nil)
		for _, k := range sortedKeys(params) {
			v, err := c.prepareValue(k, params[k], vols, c.stdout)
			if err != nil {
				return fmt.Errorf("unable to create VM %d - %w", vmid, err)
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
	}()
	if err != nil || !p.flag("start", false) {
		return err
	}
	fmt.Fprintln(c.stdout, "Execute autostart")
	return c.withLock(vmid, c.stdout, func() error { return c.startLocked(vmid, false) })
}

// addIdentity gives a new VM its own smbios1 uuid and vmgenid.
func (c *call) addIdentity(conf map[string]string, addVMGenID bool) error {
	uuid, err := c.randomUUID()
	if err != nil {
		return err
	}
	sm := parsePropString(conf["smbios1"], "uuid")
	sm.set("uuid", uuid)
	conf["smbios1"] = sm.format("")
	if _, ok := conf["vmgenid"]; ok || addVMGenID {
		if conf["vmgenid"] == "0" {
			return nil
		}
		gen, err := c.randomUUID()
		if err != nil {
			return err
		}
		conf["vmgenid"] = gen
	}
	return nil
}

// defaultBootOrder is get_default_bootdevices: first disk, CD-ROMs, net0.
func defaultBootOrder(conf map[string]string) string {
	var order []string
	var cdroms []string
	diskDone := false
	for _, prefix := range []string{"ide", "sata", "scsi", "virtio"} {
		var keys []string
		for _, d := range drives(conf) {
			if strings.HasPrefix(d.key, prefix) {
				keys = append(keys, d.key)
			}
		}
		sort.Slice(keys, func(i, j int) bool { return driveIndex(keys[i]) < driveIndex(keys[j]) })
		for _, k := range keys {
			d := parseDrive(k, conf[k])
			switch {
			case d.isCdrom():
				cdroms = append(cdroms, k)
			case !diskDone:
				order = append(order, k)
				diskDone = true
			}
		}
	}
	order = append(order, cdroms...)
	if _, ok := conf["net0"]; ok {
		order = append(order, "net0")
	}
	return strings.Join(order, ";")
}

func driveIndex(key string) int {
	i := strings.IndexAny(key, "0123456789")
	n, _ := strconv.Atoi(key[i:])
	return n
}

func (c *call) qmResize(p *params) error {
	vmid := vmidOf(p, "vmid")
	key := p.get("disk")
	return c.withLock(vmid, c.stdout, func() error {
		conf, err := c.loadUnlocked(vmid, p.flag("skiplock", false))
		if err != nil {
			return err
		}
		v, ok := conf.main[key]
		if !ok {
			return errorf("disk '%s' does not exist", key)
		}
		d := parseDrive(key, v)
		if d.isCdrom() || d.isCloudinit() {
			return errorf("you can't resize a cdrom")
		}
		cur, _ := parseSize(d.ps.get("size"))
		spec := p.get("size")
		delta, grow := strings.CutPrefix(spec, "+")
		n, _ := parseSize(delta)
		next := n
		if grow {
			next = cur + n
		}
		if next < cur {
			return errorf("shrinking disks is not supported")
		}
		if next == cur {
			return nil
		}
		d.ps.set("size", formatSize(next))
		conf.main[key] = d.String()
		return c.writeConfig(vmid, conf)
	})
}

func (c *call) qmUnlock(p *params) error {
	vmid := vmidOf(p, "vmid")
	return c.withLock(vmid, c.stderr, func() error {
		conf, err := c.loadConfig(vmid)
		if err != nil {
			return err
		}
		delete(conf.main, "lock")
		delete(conf.pending, "lock")
		return c.writeConfig(vmid, conf)
	})
}

func (c *call) qmTemplate(p *params) error {
	vmid := vmidOf(p, "vmid")
	return c.withLock(vmid, c.stdout, func() error {
		conf, err := c.loadUnlocked(vmid, false)
		if err != nil {
			return err
		}
		if conf.main["template"] == "1" {
			return errorf("you can't convert a template to a template")
		}
		if running, err := c.isRunning(vmid); err != nil {
			return err
		} else if running {
			return errorf("you can't convert a VM to template if VM is running")
		}
		if len(conf.snaps) > 0 {
			return errorf("unable to create template, because VM contains snapshots")
		}
		only := p.get("disk")
		for _, d := range drives(conf.main) {
			if !d.isDisk() || only != "" && d.key != only {
				continue
			}
			d.ps.vals["file"] = baseName(d.volid())
			conf.main[d.key] = d.String()
		}
		conf.main["template"] = "1"
		return c.writeConfig(vmid, conf)
	})
}

func (c *call) qmImportDisk(p *params) error {
	vmid := vmidOf(p, "vmid")
	src, storage := p.get("source"), p.get("storage")
	st, err := os.Stat(c.path(src))
	if err != nil || !st.Mode().IsRegular() {
		return errorf("source '%s' does not exist", src)
	}
	return c.withLock(vmid, c.stderr, func() error {
		conf, err := c.loadUnlocked(vmid, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "importing disk '%s' to VM %d ...\n", src, vmid)
		volid := newVolumes(vmid, conf.main).disk(storage, p.get("format"))
		fmt.Fprintf(c.stdout, "transferred %s of %s (100.00%%)\n", renderBytes(st.Size()), renderBytes(st.Size()))
		key := p.get("target-disk")
		value := volid
		if key == "" {
			for i := 0; ; i++ {
				key = fmt.Sprintf("unused%d", i)
				if _, used := conf.main[key]; !used {
					break
				}
			}
		} else {
			value = volid + ",size=" + formatSize(st.Size())
		}
		conf.main[key] = value
		if err := c.recordVolumeSize(volid, st.Size()); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Successfully imported disk as '%s:%s'\n", key, value)
		return c.writeConfig(vmid, conf)
	})
}
