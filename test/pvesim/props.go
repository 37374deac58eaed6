package pvesim

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The VM config options qm create/set accept (qemu-server's
// json_config_properties), with the checks pvesim makes. Values are
// stored as given; only booleans are normalized to 1/0.

var (
	ostypes  = []string{"other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris"}
	locks    = []string{"backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspending", "suspended"}
	scsihws  = []string{"lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"}
	citypes  = []string{"configdrive2", "nocloud", "opennebula"}
	memoryRE = regexp.MustCompile(`^(?:current=)?(\d+)$`)
)

// cloudinitKeys are applied at once even on a running VM and recorded in
// [special:cloudinit] until the next ISO is generated.
var cloudinitKeys = map[string]bool{
	"cicustom": true, "cipassword": true, "citype": true, "ciupgrade": true, "ciuser": true,
	"nameserver": true, "searchdomain": true, "sshkeys": true,
}

// hotKeys are applied at once on a running VM; every other option goes to
// [PENDING] until the next start (no CPU/memory hotplug).
var hotKeys = map[string]bool{
	"name": true, "onboot": true, "tags": true, "description": true, "protection": true,
	"startup": true, "lock": true, "hookscript": true,
}

func isHotKey(k string) bool {
	return hotKeys[k] || cloudinitKeys[k] || strings.HasPrefix(k, "ipconfig") || netKeyRE.MatchString(k) || strings.HasPrefix(k, "unused")
}

func formatMemory(v string) string {
	m := memoryRE.FindStringSubmatch(v)
	if m == nil {
		return "invalid format - format error"
	}
	if n, err := strconv.Atoi(m[1]); err != nil || n < 16 {
		return "value must have a minimum value of 16"
	}
	return ""
}

// formatIPConfig checks ipconfigN: ip=…,gw=…,ip6=…,gw6=….
func formatIPConfig(v string) string {
	return propertyList(v, nil, "ip", "gw", "ip6", "gw6")
}

// formatCicustom checks cicustom: each part names a volume (storage:path).
func formatCicustom(v string) string {
	return propertyList(v, func(vol string) string {
		if !strings.Contains(vol, ":") {
			return fmt.Sprintf("invalid format - unable to parse volume ID '%s'", vol)
		}
		return ""
	}, "user", "network", "meta", "vendor")
}

// propertyList checks a PVE property string k=v,… against its known keys,
// and each value with check when given; it returns PVE's reason or "".
func propertyList(v string, check func(string) string, keys ...string) string {
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return "invalid format - format error"
		}
		if !slices.Contains(keys, k) {
			return fmt.Sprintf("invalid format - property '%s' is not defined in schema", k)
		}
		if check != nil {
			if reason := check(val); reason != "" {
				return reason
			}
		}
	}
	return ""
}

// configProps returns the VM config options.
func configProps() []prop {
	ps := []prop{
		boolProp("acpi"), strProp("affinity"), strProp("agent"),
		{name: "arch", enum: []string{"x86_64", "aarch64"}},
		strProp("args"), strProp("audio0"), boolProp("autostart"), intProp("balloon", 0),
		{name: "bios", enum: []string{"seabios", "ovmf"}},
		strProp("boot"), strProp("bootdisk"), strProp("cdrom"), {name: "cicustom", format: formatCicustom},
		{name: "cipassword", optValue: true}, {name: "citype", enum: citypes}, boolProp("ciupgrade"), strProp("ciuser"),
		intProp("cores", 1), strProp("cpu"), {name: "cpulimit", typ: tNumber}, intProp("cpuunits", 1),
		{name: "description", maxLen: 8192}, strProp("efidisk0"), boolProp("freeze"), strProp("hookscript"),
		strProp("hotplug"), strProp("hugepages"), strProp("ivshmem"), strProp("keephugepages"),
		strProp("keyboard"), boolProp("kvm"), boolProp("localtime"), {name: "lock", enum: locks},
		strProp("machine"), {name: "memory", format: formatMemory}, strProp("meta"),
		{name: "migrate_downtime", typ: tNumber}, intProp("migrate_speed", 0),
		{name: "name", format: formatDNSName}, strProp("nameserver"), boolProp("numa"), boolProp("onboot"),
		{name: "ostype", enum: ostypes}, boolProp("protection"), boolProp("reboot"), strProp("rng0"),
		{name: "scsihw", enum: scsihws}, strProp("searchdomain"), intProp("shares", 0), strProp("smbios1"),
		intProp("smp", 1), intProp("sockets", 1), strProp("spice_enhancements"), strProp("sshkeys"),
		strProp("startdate"), strProp("startup"), boolProp("tablet"), strProp("tags"), boolProp("tdf"),
		boolProp("template"), strProp("tpmstate0"), intProp("vcpus", 1), strProp("vga"), strProp("vmgenid"),
		strProp("vmstatestorage"), strProp("watchdog"),
	}
	indexed := []struct {
		prefix string
		n      int
		format func(string) string
	}{
		{"hostpci", 16, nil}, {"ide", 4, nil}, {"ipconfig", 32, formatIPConfig}, {"net", 32, nil},
		{"numa", 8, nil}, {"parallel", 3, nil}, {"sata", 6, nil}, {"scsi", 31, nil}, {"serial", 4, nil},
		{"unused", 256, nil}, {"usb", 14, nil}, {"virtio", 16, nil}, {"virtiofs", 10, nil},
	}
	for _, ix := range indexed {
		for i := 0; i < ix.n; i++ {
			ps = append(ps, prop{name: fmt.Sprintf("%s%d", ix.prefix, i), format: ix.format})
		}
	}
	return ps
}
