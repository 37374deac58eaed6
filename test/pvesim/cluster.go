package pvesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A cluster (pve-more.md §3): the nodes share /etc/pve (the rig bind-mounts
// one folder into every node), so a VM's owner is the node whose
// directory holds its config, and the members are in /etc/pve/.members.
// qm works on the local node's VMs only (config.go: confPath); what crosses
// nodes is here: the owner of a VMID, qm clone --target, qm migrate.

// members is /etc/pve/.members: the nodes of the cluster and their
// addresses; a node without one (standalone) is its only member.
func (s *Sim) members() (map[string]string, error) {
	raw, err := os.ReadFile(s.path("etc/pve/.members"))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{s.Node: ""}, nil
	}
	if err != nil {
		return nil, err
	}
	var m struct {
		NodeList map[string]struct {
			IP string `json:"ip"`
		} `json:"nodelist"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("/etc/pve/.members: %w", err)
	}
	out := map[string]string{s.Node: ""}
	for name, n := range m.NodeList {
		out[name] = n.IP
	}
	return out, nil
}

// checkNode is PVE::Cluster::check_node_exists.
func (s *Sim) checkNode(node string) error {
	nodes, err := s.members()
	if err != nil {
		return err
	}
	if _, ok := nodes[node]; !ok {
		return errorf("no such cluster node '%s'", node)
	}
	return nil
}

// confPathOn is where node keeps VM vmid's config.
func (s *Sim) confPathOn(node string, vmid int) string {
	return s.path("etc/pve/nodes", node, "qemu-server", strconv.Itoa(vmid)+".conf")
}

// ownerOf is the node whose directory has VM vmid's config ("" when none):
// pmxcfs allows one per VMID in the whole cluster (memdb.c).
func (s *Sim) ownerOf(vmid int) (string, error) {
	matches, err := filepath.Glob(s.path("etc/pve/nodes", "*", "qemu-server", strconv.Itoa(vmid)+".conf"))
	if err != nil || len(matches) == 0 {
		return "", err
	}
	return filepath.Base(filepath.Dir(filepath.Dir(matches[0]))), nil
}

// clusterVMIDs lists every VM of the cluster with its node.
func (s *Sim) clusterVMIDs() (map[int]string, error) {
	matches, err := filepath.Glob(s.path("etc/pve/nodes", "*", "qemu-server", "*.conf"))
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, m := range matches {
		name := strings.TrimSuffix(filepath.Base(m), ".conf")
		if id, err := strconv.Atoi(name); err == nil && vmidRE.MatchString(name) {
			out[id] = filepath.Base(filepath.Dir(filepath.Dir(m)))
		}
	}
	return out, nil
}

// reserveOnce is pmxcfs's refusal of a second config for one VMID: the
// temporary config's rename fails (pve-more.md §3.1, derived).
func (s *Sim) reserveOnce(vmid int) error {
	owner, err := s.ownerOf(vmid)
	if err != nil || owner == "" || owner == s.Node {
		return err
	}
	return errorf("close (rename) atomic file '/etc/pve/nodes/%s/qemu-server/%d.conf' failed: File exists", s.Node, vmid)
}

// cloneTarget checks qm clone --target (clone_vm): ignored when it is the
// local node; the node must exist, and every volume of the source must be on
// shared storage, as must --storage (enabled on the target).
func (c *call) cloneTarget(p *params, base map[string]string) (string, error) {
	target := p.get("target")
	if target == "" || target == "localhost" || target == c.Node {
		return "", nil
	}
	if err := c.checkNode(target); err != nil {
		return "", err
	}
	storages, err := c.storages()
	if err != nil {
		return "", err
	}
	if s := p.get("storage"); s != "" {
		st, ok := storages[s]
		switch {
		case !ok:
			return "", errorf("storage '%s' does not exist", s)
		case !st.enabledOn(target):
			return "", errorf("storage '%s' is not available on node '%s'", s, target)
		case !st.isShared():
			return "", errorf("can't clone to non-shared storage '%s'", s)
		}
	}
	for _, d := range drives(base) {
		volid := d.volid()
		if volid == "none" || volid == "" {
			continue
		}
		id, _, _ := strings.Cut(volid, ":")
		if st, ok := storages[id]; !ok || strings.HasPrefix(volid, "/") || !st.isShared() {
			return "", errorf("can't clone VM to node '%s' (VM uses local storage)", target)
		}
	}
	return target, nil
}

// moveConfigToNode is move_config_to_node: the config goes to the target's
// directory (a rename within pmxcfs).
func (c *call) moveConfigToNode(vmid int, target string) error {
	if err := os.Rename(c.confPath(vmid), c.confPathOn(target, vmid)); err != nil {
		return errorf("Failed to move config to node '%s' - rename failed: %v", target, err)
	}
	return c.updateVMList(vmid)
}

// qmMigrate is qm migrate (migrate_vm and QemuMigrate), offline only: the
// checks before the task, then a task that moves the config to the
// target's directory. Local disks are not copied: a rig's disks are Docker
// images every node sees. Its log lines carry the time, as
// AbstractMigrate's do.
func (c *call) qmMigrate(p *params) error {
	vmid, target := vmidOf(p, "vmid"), p.get("target")
	if target == c.Node || target == "localhost" {
		return badParam("target", "target is local node.")
	}
	if err := c.checkNode(target); err != nil {
		return &preFork{err}
	}
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return &preFork{err}
	}
	if err := checkLock(conf, false); err != nil {
		return &preFork{err}
	}
	running, err := c.isRunning(vmid)
	if err != nil {
		return err
	}
	if running {
		if !p.flag("online", false) {
			return &preFork{errorf("can't migrate running VM without --online")}
		}
		return &preFork{errorf("pvesim: online migration is not simulated")}
	}
	if p.flag("online", false) {
		fmt.Fprintln(c.stdout, "VM isn't running. Doing offline migration instead.")
	}
	return c.withLock(vmid, c.stdout, func() error { return c.migrateLocked(vmid, target) })
}

func (c *call) migrateLocked(vmid int, target string) error {
	start := c.Now()
	log := func(format string, args ...any) {
		fmt.Fprintf(c.stdout, "%s %s\n", c.Now().In(c.Location).Format("2006-01-02 15:04:05"), fmt.Sprintf(format, args...))
	}
	conf, err := c.loadUnlocked(vmid, false)
	if err != nil {
		return err
	}
	nodes, err := c.members()
	if err != nil {
		return err
	}
	storages, err := c.storages()
	if err != nil {
		return err
	}
	log("starting migration of VM %d to node '%s' (%s)", vmid, target, nodes[target])
	var problems []string
	for _, d := range drives(conf.main) {
		volid := d.volid()
		id, name, ok := strings.Cut(volid, ":")
		st := storages[id]
		if !ok || st == nil || st.isShared() {
			continue
		}
		switch {
		case d.isCloudinit():
			log("found generated disk '%s' (in current VM config)", volid)
		case d.isCdrom():
			problems = append(problems, fmt.Sprintf("can't migrate local disk '%s': local cdrom image", volid))
		case strings.Contains(name, "/") && strings.Contains(name, "base-"):
			base, _, _ := strings.Cut(name, "/")
			problems = append(problems, fmt.Sprintf("can't migrate local disk '%s': can't migrate '%s' as it's a clone of '%s'", volid, volid, base))
		default:
			log("found local disk '%s' (attached)", volid)
		}
	}
	duration := func() string {
		d := c.Now().Sub(start).Round(time.Second)
		return fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
	}
	if len(problems) > 0 {
		for _, pr := range problems {
			log("ERROR: %s", pr)
		}
		log("ERROR: migration aborted (duration %s): can't migrate VM - check log", duration())
		return errorf("migration aborted")
	}
	if err := c.moveConfigToNode(vmid, target); err != nil {
		log("ERROR: migration aborted (duration %s): %v", duration(), err)
		return errorf("migration aborted")
	}
	log("migration finished successfully (duration %s)", duration())
	return nil
}
