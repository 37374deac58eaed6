package pvesim

import (
	"fmt"
	"strconv"
	"strings"
)

// Snapshots are config-only: the section records the config; no disk or
// container state is saved (a rollback restores the config, not the guest).

func (c *call) qmSnapshot(p *params) error {
	vmid, name := vmidOf(p, "vmid"), p.get("snapname")
	if l := strings.ToLower(name); l == "current" || l == "pending" {
		return errorf("unable to use snapshot name '%s' (reserved name)", name)
	}
	if _, err := c.loadConfig(vmid); err != nil {
		return err
	}
	return c.withLock(vmid, c.stdout, func() error {
		conf, err := c.loadConfig(vmid)
		if err != nil {
			return err
		}
		if conf.main["template"] == "1" {
			return errorf("you can't take a snapshot if it's a template")
		}
		if err := checkLock(conf, false); err != nil {
			return err
		}
		if _, ok := conf.snaps[name]; ok {
			return errorf("snapshot name '%s' already used", name)
		}
		for _, d := range drives(conf.main) {
			if d.isDisk() {
				fmt.Fprintf(c.stdout, "snapshotting 'drive-%s' (%s)\n", d.key, d.volid())
			}
		}
		snap := map[string]string{}
		for k, v := range conf.main {
			switch {
			case k == "lock" || k == "description" || k == "digest" || strings.HasPrefix(k, "unused"):
			default:
				snap[k] = v
			}
		}
		snap["snaptime"] = strconv.FormatInt(c.Now().Unix(), 10)
		if d := p.get("description"); d != "" {
			snap["description"] = d
		}
		conf.snaps[name] = snap
		conf.main["parent"] = name
		return c.writeConfig(vmid, conf)
	})
}

func (c *call) qmDelSnapshot(p *params) error {
	vmid, name := vmidOf(p, "vmid"), p.get("snapname")
	return c.withLock(vmid, c.stdout, func() error {
		conf, err := c.loadConfig(vmid)
		if err != nil {
			return err
		}
		if conf.main["template"] == "1" {
			return errorf("you can't delete a snapshot if vm is a template")
		}
		snap, ok := conf.snaps[name]
		if !ok {
			return errorf("snapshot '%s' does not exist", name)
		}
		if err := checkLock(conf, false); err != nil {
			return err
		}
		reparent := func(s map[string]string) {
			if s["parent"] != name {
				return
			}
			if par := snap["parent"]; par != "" {
				s["parent"] = par
			} else {
				delete(s, "parent")
			}
		}
		delete(conf.snaps, name)
		reparent(conf.main)
		for _, s := range conf.snaps {
			reparent(s)
		}
		return c.writeConfig(vmid, conf)
	})
}

func (c *call) qmRollback(p *params) error {
	vmid, name := vmidOf(p, "vmid"), p.get("snapname")
	err := c.withLock(vmid, c.stdout, func() error {
		conf, err := c.loadConfig(vmid)
		if err != nil {
			return err
		}
		snap, ok := conf.snaps[name]
		if !ok {
			return errorf("snapshot '%s' does not exist", name)
		}
		if conf.main["template"] == "1" {
			return errorf("you can't rollback if vm is a template")
		}
		if err := checkLock(conf, false); err != nil {
			return err
		}
		if err := c.hardStop(vmid); err != nil {
			return err
		}
		main := map[string]string{}
		for k, v := range snap {
			main[k] = v
		}
		for _, k := range append([]string{"description"}, snapshotOnlyKeys...) {
			delete(main, k)
		}
		if d, ok := conf.main["description"]; ok {
			main["description"] = d
		}
		main["parent"] = name
		conf.main = main
		conf.pending = map[string]string{}
		return c.writeConfig(vmid, conf)
	})
	if err != nil || !p.flag("start", false) {
		return err
	}
	return c.withLock(vmid, c.stdout, func() error { return c.startLocked(vmid, false) })
}
