package pve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// configParams are raw config fields from the playbook; zero or empty
// leaves that key alone.
type configParams struct {
	Cores        int      `json:"cores"`
	Memory       int      `json:"memory"` // MiB
	Onboot       *bool    `json:"onboot"`
	BootOrder    *int     `json:"boot_order"`
	BootDelay    *int     `json:"boot_delay"`
	Agent        string   `json:"agent"` // "enabled=1"
	IP           string   `json:"ip"`    // "dhcp" or CIDR
	GW           string   `json:"gw"`
	Nameserver   string   `json:"nameserver"`
	Searchdomain string   `json:"searchdomain"`
	CIUser       string   `json:"ciuser"`
	SSHKeys      []string `json:"sshkeys"`
	CIPassword   string   `json:"cipassword"` // secret
	CICustom     string   `json:"cicustom"`
	// Bridge moves net0 to another bridge, keeping its model and MAC.
	Bridge string `json:"bridge"`
}

// configTask sets the config keys that differ, in one qm set.
type configTask struct {
	qm
	p configParams
}

const masked = "********"

func newConfig(q qm, p configParams) (tasks.Task, error) {
	switch {
	case p.Cores < 0:
		return nil, errors.New("parameters: cores: must not be negative")
	case p.Memory < 0:
		return nil, errors.New("parameters: memory: must not be negative")
	case p.GW != "" && p.IP == "":
		return nil, errors.New("parameters: gw: needs ip")
	case p.GW != "" && p.IP == "dhcp":
		return nil, errors.New("parameters: gw: not used with ip dhcp")
	}
	// One key per line, however the playbook split them.
	p.SSHKeys = keyLines(strings.Split(strings.Join(p.SSHKeys, "\n"), "\n"))
	return &configTask{qm: q, p: p}, nil
}

// wanted is one key the parameters fix, compared through norm.
type wanted struct {
	key, value string
	norm       func(string) string
}

// fixed lists the keys whose wanted value does not depend on the current
// config (sshkeys, cipassword and net0 do).
func (t *configTask) fixed() []wanted {
	p := t.p
	var w []wanted
	add := func(key, value string, norm func(string) string) {
		w = append(w, wanted{key, value, norm})
	}
	if p.Cores > 0 {
		add("cores", strconv.Itoa(p.Cores), same)
	}
	if p.Memory > 0 {
		add("memory", strconv.Itoa(p.Memory), propNorm("current"))
	}
	if p.Onboot != nil {
		add("onboot", boolWord(*p.Onboot), boolNorm)
	}
	if p.BootOrder != nil {
		startup := "order=" + strconv.Itoa(*p.BootOrder)
		if p.BootDelay != nil {
			startup += ",up=" + strconv.Itoa(*p.BootDelay)
		}
		add("startup", startup, propNorm("order"))
		add("boot", "order=scsi0;net0", propNorm("legacy"))
	}
	if p.Agent != "" {
		add("agent", p.Agent, agentNorm)
	}
	if p.IP != "" {
		ipconfig := "ip=" + p.IP
		if p.GW != "" {
			ipconfig += ",gw=" + p.GW
		}
		add("ipconfig0", ipconfig, propNorm(""))
	}
	if p.Nameserver != "" {
		add("nameserver", p.Nameserver, words)
	}
	if p.Searchdomain != "" {
		add("searchdomain", p.Searchdomain, words)
	}
	if p.CIUser != "" {
		add("ciuser", p.CIUser, same)
	}
	if p.CICustom != "" {
		add("cicustom", p.CICustom, propNorm(""))
	}
	return w
}

// keys names every key the parameters set, sorted.
func (t *configTask) keys() []string {
	var ks []string
	for _, w := range t.fixed() {
		ks = append(ks, w.key)
	}
	if t.p.Bridge != "" {
		ks = append(ks, "net0")
	}
	if len(t.p.SSHKeys) > 0 {
		ks = append(ks, "sshkeys")
	}
	if t.p.CIPassword != "" {
		ks = append(ks, "cipassword")
	}
	slices.Sort(ks)
	return ks
}

// keyChange is one key qm set will change.
type keyChange struct {
	key      string
	arg      string   // value given to qm set
	old, new []string // diff lines, secrets masked
	stdin    string
	secret   string
}

// changes compares the wanted keys with the VM's config; storedPW is the
// password hash the VM has ("" when none).
func (t *configTask) changes(cfg Config, storedPW string) ([]keyChange, error) {
	var out []keyChange
	for _, w := range t.fixed() {
		cur, ok := cfg[w.key]
		if w.norm(cur) == w.norm(w.value) {
			continue
		}
		kc := keyChange{key: w.key, arg: w.value, new: []string{w.value}}
		if ok {
			kc.old = []string{cur}
		}
		out = append(out, kc)
	}
	if b := t.p.Bridge; b != "" {
		net := cfg.Props("net0", "model")
		if cur, _ := net.Get("bridge"); cur != b {
			kc := keyChange{key: "net0", arg: "virtio,bridge=" + b}
			if len(net) > 0 {
				kc.arg = net.With("bridge", b).String()
				kc.old = []string{cfg["net0"]}
			}
			kc.new = []string{kc.arg}
			out = append(out, kc)
		}
	}
	if len(t.p.SSHKeys) > 0 {
		cur, err := cfg.SSHKeys()
		if err != nil {
			return nil, err
		}
		want := t.p.SSHKeys
		if gone, added := setDiff(cur, want), setDiff(want, cur); len(gone)+len(added) > 0 {
			// qm set takes a file path; the keys go on stdin.
			out = append(out, keyChange{key: "sshkeys", arg: "/dev/stdin", old: gone, new: added,
				stdin: strings.Join(want, "\n") + "\n"})
		}
	}
	if pw := t.p.CIPassword; pw != "" {
		kc, err := t.passwordChange(pw, cfg, storedPW)
		if err != nil {
			return nil, err
		}
		if kc != nil {
			out = append(out, *kc)
		}
	}
	slices.SortFunc(out, func(a, b keyChange) int { return strings.Compare(a.key, b.key) })
	return out, nil
}

func (t *configTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	keys := t.keys()
	if len(keys) == 0 {
		return none("no config keys given"), nil
	}
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !st.Exists {
		return missing(env, fmt.Sprintf("vm %d does not exist yet; will set %s", vmid, strings.Join(keys, ", ")))
	}
	storedPW, err := t.storedPassword(ctx, env, st)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("vm %d config: %w", vmid, err)
	}
	changes, err := t.changes(st.Config, storedPW)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("vm %d config: %w", vmid, err)
	}
	if len(changes) == 0 {
		return none("config matches: %s", strings.Join(keys, ", ")), nil
	}
	c := call{argv: qmArgs("set", vmid), timeout: qmTimeout}
	var names []string
	diff := fmt.Sprintf("--- vm %d qm config\n+++ vm %d wanted\n", vmid, vmid)
	for _, kc := range changes {
		names = append(names, kc.key)
		c.argv = append(c.argv, "--"+kc.key, kc.arg)
		c.stdin += kc.stdin
		if kc.secret != "" {
			c.secrets = append(c.secrets, kc.secret)
		}
		for _, l := range kc.old {
			diff += "- " + kc.key + ": " + l + "\n"
		}
		for _, l := range kc.new {
			diff += "+ " + kc.key + ": " + l + "\n"
		}
	}
	what := "set " + strings.Join(names, ", ")
	if cold := coldKeys(names); st.Status == "running" && len(cold) > 0 {
		// qm keeps them pending; qm config already shows the new values.
		what += "; " + strings.Join(cold, ", ") + " take effect at the next VM start"
	}
	return planned(tasks.Update, "will "+what, what, diff, c), nil
}

// passwordChange is the cipassword change, nil when the stored hash is pw's.
// qm gets a hash made here, never pw itself.
func (t *configTask) passwordChange(pw string, cfg Config, stored string) (*keyChange, error) {
	kc := &keyChange{key: "cipassword", new: []string{masked}}
	if _, ok := cfg["cipassword"]; ok {
		match, known := passwordMatches(stored, pw)
		if match || !known {
			// A hash of another scheme cannot be compared: the password
			// was set some other way, and is left alone.
			return nil, nil
		}
		kc.old = []string{masked}
	}
	hash, err := cryptPassword(pw, t.random())
	if err != nil {
		return nil, err
	}
	kc.arg, kc.secret = hash, hash
	return kc, nil
}

// storedPassword reads the VM's password hash when it has one and the
// parameters set one: the config file has it; qm config masks it, `qm
// cloudinit dump` does not.
func (t *configTask) storedPassword(ctx context.Context, env *tasks.Env, st *State) (string, error) {
	if _, ok := st.Config["cipassword"]; !ok || t.p.CIPassword == "" {
		return "", nil
	}
	if st.PasswordHash != "" {
		return st.PasswordHash, nil
	}
	vmid := env.VM.VMID
	v, err := env.Cached(fmt.Sprintf("pve:cipassword:%d", vmid), func() (any, error) {
		line := transport.Command("qm", "cloudinit", "dump", strconv.Itoa(vmid), "user")
		res, err := env.Node.Run(ctx, transport.Cmd{Line: line, Timeout: tasks.ProbeTimeout, Probe: true})
		if err != nil {
			return nil, fmt.Errorf("read the stored password hash: %w", err)
		}
		return parseDumpPassword(res.Stdout), nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// coldKeys are the keys among names a running VM only takes at its next
// start (without CPU/memory hotplug, the Proxmox default).
func coldKeys(names []string) []string {
	var out []string
	for _, n := range names {
		if n == "agent" || n == "cores" || n == "memory" {
			out = append(out, n)
		}
	}
	return out
}

// setDiff lists the lines of a missing from b, in a's order, once each.
func setDiff(a, b []string) []string {
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func same(s string) string { return s }

func words(s string) string { return strings.Join(strings.Fields(s), " ") }

func boolWord(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// boolNorm treats an unset boolean as 0, its default.
func boolNorm(s string) string { return boolWord(parseBool(s)) }

// propNorm compares property strings regardless of order and of whether the
// default key is spelled out.
func propNorm(defaultKey string) func(string) string {
	return func(s string) string { return ParseProps(s, defaultKey).canonical() }
}

// agentNorm makes `agent: 1` equal `agent: enabled=1` (and on/yes/true).
func agentNorm(s string) string {
	ps := ParseProps(s, "enabled")
	if v, ok := ps.Get("enabled"); ok {
		ps = ps.With("enabled", boolNorm(v))
	}
	return ps.canonical()
}
