package pvesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// /etc/pve as pmxcfs lays it out (pve-more.md §3.1): a VM's config lives in
// its node's directory, nodes/<node>/qemu-server/<vmid>.conf; qemu-server
// and local are symlinks to the local node's directories; .vmlist says
// which node owns which VM.

// layout makes the local node's directories and the symlinks to them. A
// real qemu-server directory (an older node image made one) becomes the
// symlink, its configs moved into the node's directory.
func (s *Sim) layout() error {
	nodeDir := s.path("etc/pve/nodes", s.Node, "qemu-server")
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return err
	}
	for name, target := range map[string]string{"qemu-server": "nodes/" + s.Node + "/qemu-server", "local": "nodes/" + s.Node} {
		link := s.path("etc/pve", name)
		fi, err := os.Lstat(link)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			continue
		case err == nil && fi.IsDir():
			if err := moveConfigs(link, nodeDir); err != nil {
				return err
			}
			if err := os.Remove(link); err != nil {
				return fmt.Errorf("make %s a symlink: %w", link, err)
			}
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return err
		}
		// Another qm call may make it at the same moment.
		if err := os.Symlink(target, link); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

func moveConfigs(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// vmList is /etc/pve/.vmlist.
type vmList struct {
	Version int                    `json:"version"`
	IDs     map[string]vmListEntry `json:"ids"`
}

type vmListEntry struct {
	Node    string `json:"node"`
	Type    string `json:"type"`
	Version int    `json:"version"`
}

// updateVMList records in .vmlist that vmid's config changed (or went):
// pmxcfs keeps it from the configs of every node, a version per VM that
// moves when its config changes.
func (s *Sim) updateVMList(vmid int) error {
	path := s.path("etc/pve/.vmlist")
	// pvesim's own lock, on the nodes directory: every node of a rig
	// cluster shares it, and nothing but pmxcfs's files belongs in /etc/pve.
	lock, err := os.Open(s.path("etc/pve/nodes"))
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	var l vmList
	if raw, err := os.ReadFile(path); err == nil {
		json.Unmarshal(raw, &l) // a broken list is made anew
	}
	ids, err := s.clusterVMIDs() // every node's: the cluster shares /etc/pve
	if err != nil {
		return err
	}
	old := l.IDs
	l.Version++
	l.IDs = map[string]vmListEntry{}
	for id, node := range ids {
		key := strconv.Itoa(id)
		e, ok := old[key]
		if !ok || id == vmid || e.Node != node {
			e = vmListEntry{Node: node, Type: "qemu", Version: l.Version}
		}
		l.IDs[key] = e
	}
	return writeFileAtomic(path, l.encode(), 0o440)
}

// encode prints the list as status.c does: one entry a line, the last
// closing two braces, then an empty line.
func (l vmList) encode() []byte {
	if len(l.IDs) == 0 {
		return []byte(fmt.Sprintf("{\n\"version\": %d\n\n}\n", l.Version))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\"version\": %d,\n\"ids\": {", l.Version)
	keys := make([]string, 0, len(l.IDs))
	for k := range l.IDs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		e := l.IDs[k]
		sep := ","
		if i == len(keys)-1 {
			sep = "}"
		}
		fmt.Fprintf(&b, "\n\"%s\": { \"node\": \"%s\", \"type\": \"%s\", \"version\": %d }%s", k, e.Node, e.Type, e.Version, sep)
	}
	b.WriteString("\n\n}\n")
	return []byte(b.String())
}
