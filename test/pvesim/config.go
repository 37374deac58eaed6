package pvesim

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// vmConfig is a VM config file as Proxmox's parse_vm_config sees it: the
// main section, [PENDING], [special:cloudinit] and one section per snapshot.
// Descriptions live under the key "description" (decoded text).
type vmConfig struct {
	main      map[string]string
	pending   map[string]string // may hold "delete: a,b"
	cloudinit map[string]string // values the current cloud-init ISO was built from, for changed keys
	snaps     map[string]map[string]string
	digest    string
}

func newConfig() *vmConfig {
	return &vmConfig{
		main:      map[string]string{},
		pending:   map[string]string{},
		cloudinit: map[string]string{},
		snaps:     map[string]map[string]string{},
	}
}

var (
	sectionRE = regexp.MustCompile(`(?i)^\[([a-z][a-z0-9_\-]+)\]\s*$`)
	keyRE     = regexp.MustCompile(`^([a-z][a-z_]*\d*):\s*(.+?)\s*$`)
)

// parseConfig reads raw the way parse_vm_config does.
func parseConfig(raw []byte) *vmConfig {
	c := newConfig()
	sum := sha1.Sum(raw)
	c.digest = hex.EncodeToString(sum[:])
	cur := c.main
	var descr *string
	finish := func() {
		if descr != nil {
			if d := strings.TrimRight(*descr, " \t\r\n"); d != "" {
				cur["description"] = d
			}
		}
		descr = nil
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		switch {
		case strings.EqualFold(strings.TrimSpace(line), "[PENDING]"):
			finish()
			cur = c.pending
			continue
		case strings.EqualFold(strings.TrimSpace(line), "[special:cloudinit]"):
			finish()
			cur = c.cloudinit
			continue
		}
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			finish()
			cur = map[string]string{}
			c.snaps[m[1]] = cur
			continue
		}
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			if descr == nil {
				descr = new(string)
			}
			*descr += decodeText(rest) + "\n"
			continue
		}
		if rest, ok := strings.CutPrefix(line, "description:"); ok {
			if descr == nil {
				descr = new(string)
			}
			*descr += decodeText(strings.TrimSpace(rest))
			continue
		}
		if m := keyRE.FindStringSubmatch(line); m != nil {
			cur[m[1]] = m[2]
		}
	}
	finish()
	return c
}

// encode renders the config as write_vm_config does.
func (c *vmConfig) encode() []byte {
	var b bytes.Buffer
	writeSection(&b, c.main)
	if len(c.pending) > 0 {
		b.WriteString("\n[PENDING]\n")
		writeSection(&b, c.pending)
	}
	if len(c.cloudinit) > 0 {
		b.WriteString("\n[special:cloudinit]\n")
		writeSection(&b, c.cloudinit)
	}
	for _, name := range sortedKeys(c.snaps) {
		fmt.Fprintf(&b, "\n[%s]\n", name)
		writeSection(&b, c.snaps[name])
	}
	return b.Bytes()
}

func writeSection(b *bytes.Buffer, kv map[string]string) {
	if d, ok := kv["description"]; ok {
		for _, l := range strings.Split(d, "\n") {
			b.WriteString("#" + encodeText(l) + "\n")
		}
	}
	for _, k := range sortedKeys(kv) {
		if k == "description" {
			continue
		}
		fmt.Fprintf(b, "%s: %s\n", k, kv[k])
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// encodeText is PVE::Tools::encode_text: every byte outside 0x20-0x7e and
// ':' becomes %XX.
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

func decodeText(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// uriEscape is URI::Escape::uri_escape with its default safe set, which
// is how qm stores sshkeys.
func uriEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// withPending returns the main section with pending values and deletions
// applied: what `qm config` shows by default.
func (c *vmConfig) withPending() map[string]string {
	out := cloneMap(c.main)
	for k, v := range c.pending {
		if k == "delete" {
			continue
		}
		out[k] = v
	}
	for _, k := range c.pendingDeletes() {
		delete(out, k)
	}
	return out
}

// shown is what qm config and the config API print: pending changes
// applied, the config in effect (current), or a snapshot's config.
func (c *vmConfig) shown(current bool, snapshot string) (map[string]string, error) {
	if snapshot != "" {
		s, ok := c.snaps[snapshot]
		if !ok {
			return nil, errorf("snapshot '%s' does not exist", snapshot)
		}
		return s, nil
	}
	if current {
		return c.main, nil
	}
	return c.withPending(), nil
}

func (c *vmConfig) pendingDeletes() []string {
	var out []string
	for _, k := range strings.Split(c.pending["delete"], ",") {
		if k = strings.TrimPrefix(strings.TrimSpace(k), "!"); k != "" {
			out = append(out, k)
		}
	}
	return out
}

// setPendingDeletes replaces the pending deletion list.
func (c *vmConfig) setPendingDeletes(keys []string) {
	if len(keys) == 0 {
		delete(c.pending, "delete")
		return
	}
	c.pending["delete"] = strings.Join(keys, ",")
}

// applyPending moves pending values into the main section (at VM start).
func (c *vmConfig) applyPending() {
	c.main = c.withPending()
	c.pending = map[string]string{}
}

// Property strings: "virtio=BC:24:11:12:34:56,bridge=vmbr0".

type propString struct {
	keys []string
	vals map[string]string
}

// parsePropString splits a property string; a part without "=" is stored
// under defaultKey.
func parsePropString(s, defaultKey string) *propString {
	p := &propString{vals: map[string]string{}}
	if s == "" {
		return p
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			k, v = defaultKey, part
		}
		if _, seen := p.vals[k]; !seen {
			p.keys = append(p.keys, k)
		}
		p.vals[k] = v
	}
	return p
}

func (p *propString) get(k string) string { return p.vals[k] }

func (p *propString) set(k, v string) {
	if _, ok := p.vals[k]; !ok {
		p.keys = append(p.keys, k)
	}
	p.vals[k] = v
}

// String keeps the original order; the default key is written bare.
func (p *propString) format(defaultKey string) string {
	parts := make([]string, 0, len(p.keys))
	for _, k := range p.keys {
		if k == defaultKey {
			parts = append(parts, p.vals[k])
			continue
		}
		parts = append(parts, k+"="+p.vals[k])
	}
	return strings.Join(parts, ",")
}

// Config files on disk.

// confPath is where Proxmox keeps a VM config of this node (also seen
// through the symlink /etc/pve/qemu-server, see layout).
func (s *Sim) confPath(vmid int) string {
	return s.path("etc/pve/nodes", s.Node, "qemu-server", strconv.Itoa(vmid)+".conf")
}

// pmxcfsName is how Proxmox names the config in its messages.
func (s *Sim) pmxcfsName(vmid int) string {
	return fmt.Sprintf("nodes/%s/qemu-server/%d.conf", s.Node, vmid)
}

var errNoConfig = errors.New("no config")

// readConfig loads a VM config; errNoConfig when it does not exist.
func (s *Sim) readConfig(vmid int) (*vmConfig, error) {
	raw, err := os.ReadFile(s.confPath(vmid))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoConfig
	}
	if err != nil {
		return nil, fmt.Errorf("read config of VM %d: %w", vmid, err)
	}
	return parseConfig(raw), nil
}

// loadConfig is PVE's load_config: a missing file is the "Configuration
// file ... does not exist" error.
func (s *Sim) loadConfig(vmid int) (*vmConfig, error) {
	c, err := s.readConfig(vmid)
	if errors.Is(err, errNoConfig) {
		return nil, &exitError{msg: fmt.Sprintf("Configuration file '%s' does not exist", s.pmxcfsName(vmid)), code: exitNoConfig}
	}
	return c, err
}

// writeConfig replaces the config file atomically, as pmxcfs does.
func (s *Sim) writeConfig(vmid int, c *vmConfig) error {
	if err := writeFileAtomic(s.confPath(vmid), c.encode(), 0o640); err != nil {
		return err
	}
	return s.updateVMList(vmid)
}

// removeConfig deletes a VM's config.
func (s *Sim) removeConfig(vmid int) error {
	if err := os.Remove(s.confPath(vmid)); err != nil {
		return err
	}
	return s.updateVMList(vmid)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// vmids lists the VMs of this node, sorted.
func (s *Sim) vmids() ([]int, error) {
	entries, err := os.ReadDir(filepath.Dir(s.confPath(0)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".conf")
		if !ok {
			continue
		}
		if id, err := strconv.Atoi(name); err == nil && vmidRE.MatchString(name) {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids, nil
}

// loadUnlocked loads vmid's config and refuses it when it carries a lock
// (unless skiplock): the opening of most config-changing commands.
func (c *call) loadUnlocked(vmid int, skiplock bool) (*vmConfig, error) {
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return nil, err
	}
	return conf, checkLock(conf, skiplock)
}

// checkLock refuses a VM whose config carries a lock, unless skiplock.
func checkLock(c *vmConfig, skiplock bool) error {
	if l := c.main["lock"]; l != "" && !skiplock {
		return errorf("VM is locked (%s)", l)
	}
	return nil
}
