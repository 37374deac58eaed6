package pvesim

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	driveKeyRE   = regexp.MustCompile(`^(ide|sata|scsi|virtio)\d+$|^efidisk0$|^tpmstate0$`)
	netKeyRE     = regexp.MustCompile(`^net(\d+)$`)
	cloudinitRE  = regexp.MustCompile(`vm-\d+-cloudinit`)
	sizeRE       = regexp.MustCompile(`^(\d+(?:\.\d+)?)([KMGT]?)$`)
	volumeNameRE = regexp.MustCompile(`^(?:(\d+)/)?(vm|base)-(\d+)-disk-(\d+)(\.[a-z0-9]+)?$`)
)

// drive is one disk or CD-ROM entry: "local-lvm:vm-100-disk-0,size=32G".
type drive struct {
	key string
	ps  *propString
}

func parseDrive(key, value string) *drive {
	return &drive{key: key, ps: parsePropString(value, "file")}
}

func (d *drive) volid() string     { return d.ps.get("file") }
func (d *drive) isCdrom() bool     { return d.ps.get("media") == "cdrom" }
func (d *drive) isCloudinit() bool { return cloudinitRE.MatchString(d.volid()) }

// isDisk reports a real disk: not a CD-ROM, not the cloud-init drive.
func (d *drive) isDisk() bool {
	return !d.isCdrom() && !d.isCloudinit() && d.volid() != "none"
}

func (d *drive) String() string { return d.ps.format("file") }

// drives returns the drive entries of conf, sorted by key.
func drives(conf map[string]string) []*drive {
	var out []*drive
	for _, k := range sortedKeys(conf) {
		if driveKeyRE.MatchString(k) {
			out = append(out, parseDrive(k, conf[k]))
		}
	}
	return out
}

// hasCloudinitDrive reports whether conf has a cloud-init drive.
func hasCloudinitDrive(conf map[string]string) bool {
	for _, d := range drives(conf) {
		if d.isCloudinit() {
			return true
		}
	}
	return false
}

var sizeUnits = map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

// parseSize reads "32G", "512M", "1.5G" or plain bytes.
func parseSize(s string) (int64, bool) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	return int64(math.Round(f * sizeUnits[m[2]])), true
}

// formatSize is PVE's format_size: the largest unit that divides exactly.
func formatSize(b int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if b >= u.n && b%u.n == 0 {
			return fmt.Sprintf("%d%s", b/u.n, u.suffix)
		}
	}
	return strconv.FormatInt(b, 10)
}

// bootOrder lists the devices a VM boots from: "boot: order=", then the
// legacy "bootdisk".
func bootOrder(conf map[string]string) []string {
	var order []string
	if b := conf["boot"]; b != "" {
		if o := parsePropString(b, "legacy").get("order"); o != "" {
			order = strings.Split(o, ";")
		}
	}
	if bd := conf["bootdisk"]; bd != "" {
		order = append(order, bd)
	}
	return order
}

// bootDiskSize is the size of the first boot disk, like qm list's
// BOOTDISK column.
func bootDiskSize(conf map[string]string) int64 {
	for _, k := range bootOrder(conf) {
		v, ok := conf[k]
		if !ok {
			continue
		}
		d := parseDrive(k, v)
		if !d.isDisk() {
			continue
		}
		if n, ok := parseSize(d.ps.get("size")); ok {
			return n
		}
	}
	return 0
}

// isDirStorage tells file-based storages, whose volumes live in a VMID
// folder ("local:100/vm-100-disk-0.qcow2"), from block storages.
func isDirStorage(storage string) bool {
	return storage == "local" || strings.HasPrefix(storage, "dir") || strings.HasPrefix(storage, "nfs")
}

// volumes allocates volume names for one VM, like vdisk_alloc does: the
// next free disk number per storage.
type volumes struct {
	vmid int
	used map[string]bool
}

func newVolumes(vmid int, conf map[string]string) *volumes {
	v := &volumes{vmid: vmid, used: map[string]bool{}}
	for _, k := range sortedKeys(conf) {
		if driveKeyRE.MatchString(k) || strings.HasPrefix(k, "unused") {
			v.used[parseDrive(k, conf[k]).volid()] = true
		}
	}
	return v
}

// disk returns a new disk volume id on storage.
func (v *volumes) disk(storage, format string) string {
	for n := 0; ; n++ {
		var id string
		if isDirStorage(storage) {
			if format == "" {
				format = "raw"
			}
			id = fmt.Sprintf("%s:%d/vm-%d-disk-%d.%s", storage, v.vmid, v.vmid, n, format)
		} else {
			id = fmt.Sprintf("%s:vm-%d-disk-%d", storage, v.vmid, n)
		}
		if !v.used[id] && !v.usedNumber(storage, n) {
			v.used[id] = true
			return id
		}
	}
}

// usedNumber catches linked clones, whose ids embed the base volume.
func (v *volumes) usedNumber(storage string, n int) bool {
	suffix := fmt.Sprintf("vm-%d-disk-%d", v.vmid, n)
	for id := range v.used {
		if strings.HasPrefix(id, storage+":") && strings.Contains(id, suffix) {
			return true
		}
	}
	return false
}

// cloudinit returns the cloud-init volume id on storage.
func (v *volumes) cloudinit(storage string) string {
	if isDirStorage(storage) {
		return fmt.Sprintf("%s:%d/vm-%d-cloudinit.qcow2", storage, v.vmid, v.vmid)
	}
	return fmt.Sprintf("%s:vm-%d-cloudinit", storage, v.vmid)
}

// linked returns the id of a linked clone of base volume baseID.
func (v *volumes) linked(baseID string) string {
	storage, name, _ := strings.Cut(baseID, ":")
	for n := 0; ; n++ {
		var id string
		if isDirStorage(storage) {
			id = fmt.Sprintf("%s/%d/vm-%d-disk-%d.qcow2", baseID, v.vmid, v.vmid, n)
		} else {
			id = fmt.Sprintf("%s:%s/vm-%d-disk-%d", storage, name, v.vmid, n)
		}
		if !v.usedNumber(storage, n) {
			v.used[id] = true
			return id
		}
	}
}

// baseName turns "vm-100-disk-0" into "base-100-disk-0" (qm template).
func baseName(volid string) string {
	storage, name, ok := strings.Cut(volid, ":")
	if !ok || strings.Contains(name, "/base-") || strings.HasPrefix(name, "base-") {
		return volid
	}
	m := volumeNameRE.FindStringSubmatch(name)
	if m == nil || m[2] != "vm" {
		return volid
	}
	name = fmt.Sprintf("base-%s-disk-%s%s", m[3], m[4], m[5])
	if m[1] != "" {
		name = m[1] + "/" + name
	}
	return storage + ":" + name
}

// netKeys returns the netN keys of conf in order.
func netKeys(conf map[string]string) []string {
	var keys []string
	for k := range conf {
		if netKeyRE.MatchString(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

var nicModels = []string{"e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3"}

// netMAC returns the MAC address of a netN value ("virtio=BC:24:...").
func netMAC(value string) string {
	ps := parsePropString(value, "model")
	for _, m := range nicModels {
		if mac := ps.get(m); mac != "" {
			return mac
		}
	}
	if mac := ps.get("macaddr"); mac != "" {
		return mac
	}
	return ""
}

// withMAC sets the MAC of a netN value, adding one where the model stands
// alone ("virtio,bridge=vmbr0" -> "virtio=BC:24:11:..,bridge=vmbr0").
func withMAC(value, mac string) string {
	ps := parsePropString(value, "model")
	for i, k := range ps.keys {
		if k == "model" {
			model := ps.vals[k]
			ps.keys[i] = model
			delete(ps.vals, "model")
			ps.vals[model] = mac
			return ps.format("")
		}
		for _, m := range nicModels {
			if k == m {
				ps.vals[k] = mac
				return ps.format("")
			}
		}
	}
	if _, ok := ps.vals["macaddr"]; ok {
		ps.vals["macaddr"] = mac
	}
	return ps.format("")
}
