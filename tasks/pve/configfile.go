package pve

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ConfigFile is a VM config file as Proxmox writes it under /etc/pve
// (qemu-server's parse_vm_config; pve-more.md §4.1): the main section,
// [PENDING] and one section per snapshot. Special sections
// ([special:cloudinit], [special:fleecing]) are skipped.
type ConfigFile struct {
	Main      Config // values as stored; the description decoded
	Pending   Config // pending values, without "delete"
	Deletes   []string
	Snapshots map[string]Config
}

var (
	fileSectionRE = regexp.MustCompile(`(?i)^\[([a-z][a-z0-9_\-]+)\]\s*$`)
	fileKeyRE     = regexp.MustCompile(`^([a-z][a-z_\-]*\d*):\s*(.+?)\s*$`)
)

// ParseConfigFile reads a VM config file. Like Proxmox it skips blank
// lines, unknown sections and lines it does not understand.
func ParseConfigFile(raw []byte) *ConfigFile {
	f := &ConfigFile{Main: Config{}, Pending: Config{}, Snapshots: map[string]Config{}}
	cur, inPending := f.Main, false
	var descr []string
	finish := func() {
		if d := strings.TrimRight(strings.Join(descr, "\n"), " \t\r\n"); d != "" {
			cur["description"] = d
		}
		descr = nil
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			finish()
			name := strings.TrimSpace(line)
			inPending = strings.EqualFold(name, "[PENDING]")
			switch m := fileSectionRE.FindStringSubmatch(line); {
			case inPending:
				cur = f.Pending
			case m != nil:
				cur = Config{}
				f.Snapshots[m[1]] = cur
			default:
				cur = Config{} // a special or unknown section: read, then dropped
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			descr = append(descr, decodeText(rest))
			continue
		}
		m := fileKeyRE.FindStringSubmatch(line)
		switch {
		case m == nil:
		case m[1] == "description":
			descr = append(descr, decodeText(m[2]))
		case m[1] == "cdrom":
			cur["ide2"] = m[2]
		case m[1] == "delete" && inPending:
			for _, k := range strings.FieldsFunc(m[2], func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
				f.Deletes = append(f.Deletes, strings.TrimPrefix(k, "!"))
			}
		default:
			cur[m[1]] = m[2]
		}
	}
	finish()
	return f
}

// decodeText is PVE::Tools::decode_text (URI::Escape's uri_unescape): each
// %XX becomes its byte, anything else stays.
func decodeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// encodeText is PVE::Tools::encode_text: every byte outside 0x20-0x7e, and
// ':', becomes %XX ('%' itself stays).
func encodeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == ':' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Shown is what `qm config` prints of the file (qm.md §4.3): the main
// section with the pending values and deletions applied, the description
// encoded, the password masked.
func (f *ConfigFile) Shown() Config {
	out := Config{}
	for k, v := range f.Main {
		out[k] = v
	}
	for k, v := range f.Pending {
		out[k] = v
	}
	for _, k := range f.Deletes {
		delete(out, k)
	}
	if d, ok := out["description"]; ok {
		out["description"] = encodeText(d)
	}
	if _, ok := out["cipassword"]; ok {
		out["cipassword"] = "**********" // as qm config prints it
	}
	return out
}

// SnapshotNames lists the snapshots in the order qm listsnapshot prints
// its tree (print_snapshot_tree): from the roots down the parent links,
// siblings by snapshot time (those without one last), "current" left out.
func (f *ConfigFile) SnapshotNames() []string {
	names := slices.Sorted(maps.Keys(f.Snapshots))
	children := map[string][]string{}
	var roots []string
	for _, n := range names {
		if p := f.Snapshots[n]["parent"]; p != "" && p != n && f.Snapshots[p] != nil {
			children[p] = append(children[p], n)
		} else {
			roots = append(roots, n)
		}
	}
	byTime := func(ns []string) {
		sort.SliceStable(ns, func(i, j int) bool {
			a, aok := snapTime(f.Snapshots[ns[i]])
			b, bok := snapTime(f.Snapshots[ns[j]])
			if !aok || !bok {
				return aok && !bok
			}
			return a < b
		})
	}
	var out []string // nil without snapshots, as the qm reader gives
	listed := map[string]bool{}
	var walk func(n string)
	walk = func(n string) {
		out, listed[n] = append(out, n), true
		byTime(children[n])
		for _, c := range children[n] {
			walk(c)
		}
	}
	byTime(roots)
	for _, r := range roots {
		walk(r)
	}
	// Snapshots whose parent links form a loop hang from no root (a hand-
	// edited file; Proxmox never writes one): listed last, so none is
	// taken for missing.
	for _, n := range names {
		if !listed[n] {
			out = append(out, n)
		}
	}
	return out
}

func snapTime(c Config) (int64, bool) {
	t, err := strconv.ParseInt(c["snaptime"], 10, 64)
	return t, err == nil
}

// PasswordHash is the stored cipassword (a crypt hash): what `qm config`
// masks and `qm cloudinit dump` shows. A pending one is the one to compare.
func (f *ConfigFile) PasswordHash() string {
	if v, ok := f.Pending["cipassword"]; ok {
		return v
	}
	for _, k := range f.Deletes {
		if k == "cipassword" {
			return ""
		}
	}
	return f.Main["cipassword"]
}
