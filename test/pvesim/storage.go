package pvesim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Storages as /etc/pve/storage.cfg defines them (PVE::Storage::Plugin's
// section config): "<type>: <id>" headers, then indented "<key> <value>"
// lines. pvesim reads type, path and content; a missing file (or one
// without a proper "local") gets the built-in local dir storage.

type storage struct {
	id      string
	typ     string // dir, lvmthin, nfs, ...
	path    string // file-based storages only
	content map[string]bool
	shared  bool     // "shared 1"
	nodes   []string // "nodes": where it is enabled; empty: everywhere
}

// sharedTypes are always shared (PVE::Storage::Plugin's @SHARED_STORAGE).
var sharedTypes = map[string]bool{"iscsi": true, "nfs": true, "cifs": true, "rbd": true, "cephfs": true,
	"iscsidirect": true, "glusterfs": true, "zfs": true, "drbd": true, "pbs": true}

// isShared reports whether every node sees the storage's volumes.
func (st *storage) isShared() bool { return st.shared || sharedTypes[st.typ] }

// enabledOn reports whether the storage is available on node.
func (st *storage) enabledOn(node string) bool {
	if len(st.nodes) == 0 {
		return true
	}
	for _, n := range st.nodes {
		if n == node {
			return true
		}
	}
	return false
}

// builtinLocal is parse_config's fallback for a missing or odd "local".
func builtinLocal() *storage {
	return &storage{id: "local", typ: "dir", path: "/var/lib/vz",
		content: map[string]bool{"backup": true, "images": true, "iso": true, "rootdir": true, "snippets": true, "vztmpl": true}}
}

var storageHeaderRE = regexp.MustCompile(`^([a-z][a-z0-9]*):\s*(\S+)\s*$`)

// storages reads /etc/pve/storage.cfg.
func (s *Sim) storages() (map[string]*storage, error) {
	out := map[string]*storage{}
	raw, err := os.ReadFile(s.path("etc/pve/storage.cfg"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var cur *storage
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := storageHeaderRE.FindStringSubmatch(line); m != nil && line[0] != ' ' && line[0] != '\t' {
			cur = &storage{id: m[2], typ: m[1], content: map[string]bool{}}
			out[cur.id] = cur
			continue
		}
		f := strings.Fields(line)
		if cur == nil || len(f) < 2 {
			continue
		}
		switch f[0] {
		case "path":
			cur.path = f[1]
		case "content":
			for _, ct := range strings.Split(f[1], ",") {
				cur.content[ct] = true
			}
		case "shared":
			cur.shared = f[1] == "1"
		case "nodes":
			cur.nodes = strings.Split(f[1], ",")
		}
	}
	if l := out["local"]; l == nil || l.typ != "dir" || l.path != "" && l.path != "/var/lib/vz" {
		out["local"] = builtinLocal()
	}
	return out, sc.Err()
}

// storage is PVE::Storage::storage_config.
func (s *Sim) storage(id string) (*storage, error) {
	all, err := s.storages()
	if err != nil {
		return nil, err
	}
	st, ok := all[id]
	if !ok {
		return nil, errorf("storage '%s' does not exist", id)
	}
	return st, nil
}

// storagePath is the path of a file-based storage ("/var/lib/vz" for
// local and for storages pvesim does not know).
func (s *Sim) storagePath(id string) string {
	if st, err := s.storage(id); err == nil && st.path != "" {
		return st.path
	}
	return "/var/lib/vz"
}

// contentDirs are get_subdir's folders of a file-based storage.
var contentDirs = map[string]string{
	"images": "images", "iso": "template/iso", "vztmpl": "template/cache", "backup": "dump",
	"snippets": "snippets", "import": "import",
}

var (
	isoNameRE    = regexp.MustCompile(`(?i)^[^/]+\.(?:iso|img)$`)
	importNameRE = regexp.MustCompile(`^[a-zA-Z0-9\-.+=_]+\.(ova|ovf|qcow2|raw|vmdk)$`)
	imageNameRE  = regexp.MustCompile(`^(?:(\d+)/)?((?:vm|base)-\d+-(?:disk-\d+|cloudinit)(?:\.\w+)?)(?:/(\d+)/((?:vm|base)-\d+-disk-\d+(?:\.\w+)?))?$`)
)

// volume is a parsed volume id "<storage>:<name>" (PVE::Storage::parse_volname).
type volume struct {
	storage *storage
	name    string
	vtype   string // images, iso, import, snippets, ...
	format  string // for import volumes: the file name's extension
}

// parseVolume reads a volume id; ok is false for absolute paths and other
// strings that are no volume id.
func (s *Sim) parseVolume(volid string) (vol *volume, ok bool, err error) {
	id, name, found := strings.Cut(volid, ":")
	if !found || strings.HasPrefix(volid, "/") || id == "" || name == "" {
		return nil, false, nil
	}
	st, err := s.storage(id)
	if err != nil {
		return nil, true, err
	}
	v := &volume{storage: st, name: name}
	switch {
	case strings.HasPrefix(name, "iso/") && isoNameRE.MatchString(strings.TrimPrefix(name, "iso/")):
		v.vtype = "iso"
	case strings.HasPrefix(name, "import/") && importNameRE.MatchString(strings.TrimPrefix(name, "import/")):
		v.vtype = "import"
		v.format = importNameRE.FindStringSubmatch(strings.TrimPrefix(name, "import/"))[1]
	case strings.HasPrefix(name, "snippets/"):
		v.vtype = "snippets"
	case imageNameRE.MatchString(name):
		v.vtype = "images"
	default:
		return nil, true, errorf("unable to parse directory volume name '%s'", name)
	}
	return v, true, nil
}

// filePath is the node path of a volume on a file-based storage.
func (v *volume) filePath() (string, error) {
	if v.storage.path == "" {
		return "", fmt.Errorf("storage '%s' has no path", v.storage.id)
	}
	sub, rest, _ := strings.Cut(v.name, "/")
	if v.vtype == "images" {
		return filepath.Join(v.storage.path, "images", v.name), nil
	}
	if sub == "iso" || sub == "import" || sub == "snippets" {
		return filepath.Join(v.storage.path, contentDirs[v.vtype], rest), nil
	}
	return "", fmt.Errorf("no path for volume '%s:%s'", v.storage.id, v.name)
}
