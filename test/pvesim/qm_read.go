package pvesim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// memoryMiB is the configured memory ("2048" or "current=2048"; default 512).
func memoryMiB(conf map[string]string) int64 {
	m := memoryRE.FindStringSubmatch(conf["memory"])
	if m == nil {
		return 512
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func cpus(conf map[string]string) int64 {
	if v, err := strconv.ParseInt(conf["vcpus"], 10, 64); err == nil && v > 0 {
		return v
	}
	sockets, err := strconv.ParseInt(conf["sockets"], 10, 64)
	if err != nil || sockets < 1 {
		sockets = 1
	}
	cores, err := strconv.ParseInt(conf["cores"], 10, 64)
	if err != nil || cores < 1 {
		cores = 1
	}
	return sockets * cores
}

// vmStatus is PVE's vmstatus for one VM (the fields pvesim can know).
func (c *call) vmStatus(vmid int, conf *vmConfig) (map[string]any, error) {
	run, err := c.runState(vmid)
	if err != nil {
		return nil, err
	}
	m := conf.main
	name := m["name"]
	if name == "" {
		name = fmt.Sprintf("VM %d", vmid)
	}
	st := map[string]any{
		"vmid":      vmid,
		"name":      name,
		"cpus":      cpus(m),
		"cpu":       0,
		"disk":      0,
		"maxdisk":   bootDiskSize(m),
		"maxmem":    memoryMiB(m) << 20,
		"mem":       0,
		"netin":     0,
		"netout":    0,
		"uptime":    0,
		"status":    "stopped",
		"qmpstatus": "stopped",
	}
	if run.running {
		st["status"] = "running"
		st["qmpstatus"] = "running"
		st["pid"] = run.pid
		st["uptime"] = run.uptime
		st["running-machine"] = "pc-i440fx-9.0+pve0"
		st["running-qemu"] = "9.0.2"
	}
	if l := m["lock"]; l != "" {
		st["lock"] = l
	}
	if t := m["tags"]; t != "" {
		st["tags"] = t
	}
	if m["template"] == "1" {
		st["template"] = 1
	}
	return st, nil
}

func (c *call) qmList(p *params) error {
	ids, err := c.vmids()
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%10s %-20s %-10s %-10s %12s %-10s\n", "VMID", "NAME", "STATUS", "MEM(MB)", "BOOTDISK(GB)", "PID")
	for _, id := range ids {
		conf, err := c.readConfig(id)
		if err != nil {
			return err
		}
		st, err := c.vmStatus(id, conf)
		if err != nil {
			return err
		}
		pid, _ := st["pid"].(int)
		fmt.Fprintf(&b, "%10d %-20s %-10s %-10d %12.2f %-10d\n", id, st["name"], st["status"],
			st["maxmem"].(int64)>>20, float64(st["maxdisk"].(int64))/(1<<30), pid)
	}
	_, err = fmt.Fprint(c.stdout, b.String())
	return err
}

func (c *call) qmStatus(p *params) error {
	vmid := vmidOf(p, "vmid")
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return err
	}
	st, err := c.vmStatus(vmid, conf)
	if err != nil {
		return err
	}
	if !p.flag("verbose", false) {
		fmt.Fprintf(c.stdout, "status: %s\n", st["qmpstatus"])
		return nil
	}
	for _, k := range sortedKeys(st) {
		if k == "cpu" {
			continue
		}
		fmt.Fprintf(c.stdout, "%s: %v\n", k, st[k])
	}
	return nil
}

func (c *call) qmConfig(p *params) error {
	vmid := vmidOf(p, "vmid")
	if p.has("snapshot") && p.has("current") {
		return badParams(map[string]string{
			"snapshot": "cannot use 'snapshot' parameter with 'current'",
			"current":  "cannot use 'snapshot' parameter with 'current'",
		})
	}
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return err
	}
	shown, err := conf.shown(p.flag("current", false), p.get("snapshot"))
	if err != nil {
		return err
	}
	printConfig(c.stdout, shown)
	return nil
}

// printConfig is qm config's printer: sorted, digest omitted, description
// encoded, cipassword masked.
func printConfig(w interface{ Write([]byte) (int, error) }, conf map[string]string) {
	for _, k := range sortedKeys(conf) {
		v := conf[k]
		switch k {
		case "digest":
			continue
		case "description":
			v = encodeText(v)
		case "cipassword":
			v = "**********"
		}
		fmt.Fprintf(w, "%s: %s\n", k, v)
	}
}

// qmPending is format_pending: cur/new/del lines sorted by key.
func (c *call) qmPending(p *params) error {
	vmid := vmidOf(p, "vmid")
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return err
	}
	dels := map[string]bool{}
	for _, k := range conf.pendingDeletes() {
		dels[k] = true
	}
	keys := map[string]bool{}
	for k := range conf.main {
		keys[k] = true
	}
	for k := range conf.pending {
		if k != "delete" {
			keys[k] = true
		}
	}
	for k := range dels {
		keys[k] = true
	}
	mask := func(k, v string) string {
		switch k {
		case "description":
			return encodeText(v)
		case "cipassword":
			return "**********"
		}
		return v
	}
	for _, k := range sortedKeys(keys) {
		cur, hasCur := conf.main[k]
		nv, hasNew := conf.pending[k]
		switch {
		case hasCur && dels[k]:
			fmt.Fprintf(c.stdout, "del %s: %s\n", k, mask(k, cur))
		case hasCur && hasNew:
			fmt.Fprintf(c.stdout, "cur %s: %s\nnew %s: %s\n", k, mask(k, cur), k, mask(k, nv))
		case hasCur:
			fmt.Fprintf(c.stdout, "cur %s: %s\n", k, mask(k, cur))
		case hasNew:
			fmt.Fprintf(c.stdout, "new %s: %s\n", k, mask(k, nv))
		}
	}
	return nil
}

// snapEntry is one line of the snapshot tree.
type snapEntry struct {
	name, parent, description string
	snaptime                  int64
	hasTime                   bool
	children                  []string
}

// qmListSnapshot is print_snapshot_tree.
func (c *call) qmListSnapshot(p *params) error {
	vmid := vmidOf(p, "vmid")
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return err
	}
	entries := map[string]*snapEntry{}
	var order []string
	for _, name := range sortedKeys(conf.snaps) {
		s := conf.snaps[name]
		t, err := strconv.ParseInt(s["snaptime"], 10, 64)
		entries[name] = &snapEntry{name: name, parent: s["parent"], description: s["description"], snaptime: t, hasTime: err == nil}
		order = append(order, name)
	}
	entries["current"] = &snapEntry{name: "current", parent: conf.main["parent"], description: "You are here!"}
	order = append(order, "current")
	var roots []string
	for _, name := range order {
		e := entries[name]
		if par, ok := entries[e.parent]; ok && e.parent != "" && e.parent != name {
			par.children = append(par.children, name)
		} else {
			roots = append(roots, name)
		}
	}
	byTime := func(names []string) {
		sort.SliceStable(names, func(i, j int) bool {
			a, b := entries[names[i]], entries[names[j]]
			if !a.hasTime || !b.hasTime {
				return a.hasTime && !b.hasTime
			}
			return a.snaptime < b.snaptime
		})
	}
	var walk func(prefix, name string)
	walk = func(prefix, name string) {
		e := entries[name]
		desc := e.description
		if desc == "" {
			desc = "no-description"
		}
		desc, _, _ = strings.Cut(desc, "\n") // first line only
		ts := ""
		if e.hasTime {
			ts = time.Unix(e.snaptime, 0).In(c.Location).Format("2006-01-02 15:04:05")
		}
		width := 30 - len(prefix)
		if width < 0 {
			width = 0
		}
		fmt.Fprintf(c.stdout, "%s %-*s %-23s %s\n", prefix, width, name, ts, desc)
		byTime(e.children)
		for _, ch := range e.children {
			walk(" "+prefix, ch)
		}
	}
	byTime(roots)
	for _, r := range roots {
		walk("`->", r)
	}
	return nil
}

func (c *call) qmCloudinitDump(p *params) error {
	vmid := vmidOf(p, "vmid")
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return err
	}
	out, err := c.cloudinitDump(conf.main, vmid, p.get("type"))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s\n", out)
	return nil
}
