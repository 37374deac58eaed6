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
	if err := c.checkDriveParams(params); err != nil {
		return err
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
		if err := c.deleteKey(vmid, conf, k); err != nil {
			return err
		}
	}
	conf.setPendingDeletes(pendingDel)
	for _, k := range sortedKeys(params) {
		v, err := c.prepareValue(k, params[k], vols, conf.main["template"] == "1", c.stdout)
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
			if err := c.deleteKey(vmid, conf, k); err != nil {
				return err
			}
		}
		conf.applyPending()
	}
	return nil
}

// deleteKey removes an option; a deleted disk becomes an unused volume,
// a deleted unused volume is freed.
func (c *call) deleteKey(vmid int, conf *vmConfig, k string) error {
	v, ok := conf.main[k]
	delete(conf.main, k)
	if ok && strings.HasPrefix(k, "unused") {
		return c.freeDisks(vmid, map[string]string{k: v})
	}
	if !ok || !driveKeyRE.MatchString(k) {
		return nil
	}
	d := parseDrive(k, v)
	if !d.isDisk() {
		return nil
	}
	for i := 0; ; i++ {
		key := fmt.Sprintf("unused%d", i)
		if _, used := conf.main[key]; !used {
			conf.main[key] = d.volid()
			return nil
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
		cur, ok := parseSize(d.ps.get("size"))
		if !ok { // an imported disk attached without its size
			cur, _ = c.volumeSize(d.volid())
		}
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
