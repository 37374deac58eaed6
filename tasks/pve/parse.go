package pve

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Config is the output of `qm config`: one value per key, exactly as stored
// (property strings, booleans as 1/0, sshkeys URL-encoded).
type Config map[string]string

// ParseConfig reads `qm config` output: sorted `key: value` lines.
func ParseConfig(out []byte) (Config, error) {
	cfg := Config{}
	for i, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("qm config line %d: not key: value: %q", i+1, line)
		}
		cfg[key] = strings.TrimSpace(value)
	}
	return cfg, nil
}

// Lock is the persistent config lock (`lock: backup`), "" when unlocked.
func (c Config) Lock() string { return c["lock"] }

// Template reports whether the VM is a template (`template: 1`).
func (c Config) Template() bool { return parseBool(c["template"]) }

// Props parses the property string under key. defaultKey names the property
// a bare first element stands for (`agent: 1` means enabled=1).
func (c Config) Props(key, defaultKey string) Props { return ParseProps(c[key], defaultKey) }

// DiskSize returns the size of a disk (`scsi0: local-lvm:vm-100-disk-0,size=32G`)
// in bytes.
func (c Config) DiskSize(disk string) (int64, error) {
	v, ok := c[disk]
	if !ok {
		return 0, fmt.Errorf("no disk %s in the config", disk)
	}
	size, ok := ParseProps(v, "file").Get("size")
	if !ok {
		return 0, fmt.Errorf("disk %s has no size: %q", disk, v)
	}
	return ParseSize(size)
}

// SSHKeys returns the decoded authorized keys, one per non-empty line.
func (c Config) SSHKeys() ([]string, error) { return DecodeSSHKeys(c["sshkeys"]) }

// Prop is one key=value element of a property string.
type Prop struct {
	Key, Value string
	bare       bool // written without "key=" (the default key)
}

// Props is a property string (`virtio=BC:24:11:12:34:56,bridge=vmbr0`) in
// its written order, so a value can be changed without reordering the rest.
type Props []Prop

// ParseProps splits a property string. An element without `=` is the value
// of defaultKey.
func ParseProps(s, defaultKey string) Props {
	if s == "" {
		return nil
	}
	var ps Props
	for _, el := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(el, "=")
		if !ok {
			ps = append(ps, Prop{Key: defaultKey, Value: el, bare: true})
			continue
		}
		ps = append(ps, Prop{Key: k, Value: v})
	}
	return ps
}

// Get returns the value of key.
func (ps Props) Get(key string) (string, bool) {
	for _, p := range ps {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// With returns a copy with key set to value, in place when present, else
// appended.
func (ps Props) With(key, value string) Props {
	out := append(Props(nil), ps...)
	for i := range out {
		if out[i].Key == key {
			out[i].Value = value
			return out
		}
	}
	return append(out, Prop{Key: key, Value: value})
}

// String writes the property string back as it was written.
func (ps Props) String() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Key + "=" + p.Value
		if p.bare {
			parts[i] = p.Value
		}
	}
	return strings.Join(parts, ",")
}

// canonical is a form for comparing two property strings: order-independent
// and with the default key spelled out.
func (ps Props) canonical() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Key + "=" + p.Value
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// ParseSize reads a qm disk size (`32G`, `512M`, `1T`, `1.5G`, plain bytes)
// in bytes. Units are binary, as qm uses them.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			num = s[:n-1]
		}
	}
	if num == "" || strings.Trim(num, "0123456789.") != "" || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("disk size %q: not a size", s)
	}
	if !strings.Contains(num, ".") {
		whole, err := strconv.ParseInt(num, 10, 64)
		if err != nil || whole > math.MaxInt64/mult {
			return 0, fmt.Errorf("disk size %q: out of range", s)
		}
		return whole * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("disk size %q: not a size", s)
	}
	return int64(f * float64(mult)), nil
}

// FormatSize writes bytes in the largest unit that divides them exactly, the
// way qm writes sizes.
func FormatSize(b int64) string {
	units := []struct {
		suffix string
		size   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}}
	for _, u := range units {
		if b >= u.size && b%u.size == 0 {
			return strconv.FormatInt(b/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}

// DecodeSSHKeys turns the stored, URL-encoded sshkeys value into its key
// lines, blank lines dropped. Path unescaping keeps a literal '+' (base64).
func DecodeSSHKeys(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	text, err := url.PathUnescape(v)
	if err != nil {
		return nil, fmt.Errorf("sshkeys: %w", err)
	}
	return keyLines(strings.Split(text, "\n")), nil
}

// keyLines trims lines and drops the empty ones.
func keyLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// ParseStatus reads `qm status` output (`status: running`).
func ParseStatus(out []byte) (string, error) {
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "status:"); ok {
			if s := strings.TrimSpace(v); s != "" {
				return s, nil
			}
		}
	}
	return "", fmt.Errorf("qm status: no status line in %q", strings.TrimSpace(string(out)))
}

// ParseSnapshots reads the `qm listsnapshot` tree and returns the snapshot
// names in order, without the `current` pseudo-entry. Names never hold
// spaces, so the name is the first word after the "`->" marker.
func ParseSnapshots(out []byte) ([]string, error) {
	var names []string
	for i, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		rest, ok := strings.CutPrefix(strings.TrimLeft(line, " "), "`->")
		fields := strings.Fields(rest)
		if !ok || len(fields) == 0 {
			return nil, fmt.Errorf("qm listsnapshot line %d: not a tree entry: %q", i+1, line)
		}
		if fields[0] != "current" {
			names = append(names, fields[0])
		}
	}
	return names, nil
}

// parseBool reads a qm boolean (1|on|yes|true, any case).
func parseBool(s string) bool {
	switch strings.ToLower(s) {
	case "1", "on", "yes", "true":
		return true
	}
	return false
}
