package pve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// The VM firewall (pve-more.md §2) is written as the VM's file
// /etc/pve/firewall/<vmid>.fw, in one atomic write (a temp file renamed
// over it, as Proxmox writes it), not through pvesh's rule API: the API
// inserts every new rule at the top and ignores its position, writes it
// disabled unless told otherwise, and needs a call per rule, so putting an
// ordered list in place takes many calls and an interruption leaves a half
// written rule set; the file changes whole, in one round trip. Proxmox
// skips a rule it cannot read without a word, which is why the inventory
// checks each rule as pve-firewall does before anything runs. Options
// phoenix does not manage and the file's other sections (IP sets, aliases)
// are kept as they are.

const (
	firewallDir = "/etc/pve/firewall"
	clusterFW   = firewallDir + "/cluster.fw"
)

func vmFirewallFile(vmid int) string { return fmt.Sprintf("%s/%d.fw", firewallDir, vmid) }

type firewallParams struct {
	Enabled bool                     `json:"enabled"`
	Rules   []inventory.FirewallRule `json:"rules"`
}

// firewallTask is vm_firewall: the VM's firewall options and rules, and
// firewall=1 on net0 while it is enabled.
type firewallTask struct {
	qm
	p     firewallParams
	rules []fwRule
}

func newFirewall(q qm, p firewallParams) (tasks.Task, error) {
	t := &firewallTask{qm: q, p: p}
	for i, r := range p.Rules {
		if r.Port != "" && r.DPort == "" {
			r.DPort = r.Port
		}
		rule := fwRule{enabled: true, dir: strings.ToUpper(r.Type), action: strings.ToUpper(r.Action),
			proto: strings.ToLower(r.Proto), dport: r.DPort, sport: r.SPort, source: r.Source, dest: r.Dest,
			comment: strings.TrimSpace(r.Comment)}
		// The inventory checks rules; this only keeps a value from changing
		// the line it is written into.
		fields := strings.Join([]string{rule.dir, rule.action, rule.proto, rule.dport, rule.sport, rule.source, rule.dest}, "")
		if rule.dir != "IN" && rule.dir != "OUT" || rule.action == "" || strings.ContainsAny(fields, " \t#|") ||
			strings.ContainsAny(rule.String(), "\n\r") {
			return nil, fmt.Errorf("parameters: rules[%d]: %q is not a VM firewall rule", i, rule.String())
		}
		t.rules = append(t.rules, rule)
	}
	return t, nil
}

// firewallPlan is what Apply writes and runs.
type firewallPlan struct {
	path  string
	mkdir bool   // the node has no firewall directory yet
	file  []byte // nil: the file stays as it is
	calls []call // then, in order
}

func (t *firewallTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	st, err := ReadState(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !st.Exists {
		return missing(env, fmt.Sprintf("vm %d does not exist yet; will write its firewall (%s)", vmid, t.words()))
	}
	path := vmFirewallFile(vmid)
	cur, clusterOn, err := readFirewalls(ctx, env.Node, path)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("vm %d firewall: %w", vmid, err)
	}
	if cur == nil && !t.p.Enabled {
		return none("firewall off (no %s)", path), nil
	}
	note := ""
	if !clusterOn && t.p.Enabled {
		note = "; not enforced while the datacenter firewall is off (enable: 1 in " + clusterFW + " switches it on; phoenix never does: it filters the nodes too)"
		warnOnce(env, "datacenter firewall off", "warning: vm %d: the datacenter firewall is off, so the VM's firewall rules are not enforced", vmid)
	}
	plan := &firewallPlan{path: path}
	var will, did, cmds []string
	old, now := cur.render(), cur.with(t.p.Enabled, t.rules).render()
	diff := unified(path, old, now)
	if diff != "" {
		plan.file, plan.mkdir = now, cur == nil
		if plan.mkdir {
			cmds = append(cmds, mkdirFirewall().printable())
		}
		cmds = append(cmds, "write "+path+" (mode 0640)")
		will = append(will, fmt.Sprintf("write %s (%s)", path, t.words()))
		did = append(did, fmt.Sprintf("wrote %s (%s)", path, t.words()))
	}
	if t.p.Enabled {
		net := Config(st.Config).Props("net0", "model")
		if v, _ := net.Get("firewall"); len(net) > 0 && !parseBool(v) {
			// The whole string, MAC included: without it qm makes a new MAC.
			arg := net.With("firewall", "1").String()
			c := call{argv: qmArgs("set", vmid, "--net0", arg), timeout: qmTimeout}
			plan.calls = append(plan.calls, c)
			cmds = append(cmds, c.printable())
			will = append(will, "set firewall=1 on net0")
			did = append(did, "set firewall=1 on net0")
			diff += fmt.Sprintf("- net0: %s\n+ net0: %s\n", st.Config["net0"], arg)
		}
	}
	if len(will) == 0 {
		return none("firewall matches: %s%s", t.words(), note), nil
	}
	return tasks.Change{Action: tasks.Update, Summary: "will " + strings.Join(will, "; ") + note,
		Done: strings.Join(did, "; ") + note, Diff: diff, Commands: cmds, Plan: plan}, nil
}

func mkdirFirewall() call {
	return call{argv: []string{"mkdir", "-p", firewallDir}, timeout: qmTimeout}
}

// words says what the firewall is: on or off and how many rules.
func (t *firewallTask) words() string {
	state := "enabled"
	if !t.p.Enabled {
		state = "disabled"
	}
	n := len(t.rules)
	if n == 1 {
		return state + ", 1 rule"
	}
	return fmt.Sprintf("%s, %d rules", state, n)
}

// Apply writes the file, then runs the qm calls.
func (t *firewallTask) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	p, ok := c.Plan.(*firewallPlan)
	if !ok {
		return errors.New("change carries no firewall plan")
	}
	if p.mkdir {
		if err := t.run(ctx, env, mkdirFirewall()); err != nil {
			return err
		}
	}
	if p.file != nil {
		// pmxcfs takes mode 0640 only (root:www-data, as Proxmox writes it).
		if err := env.Node.Put(ctx, p.path, bytes.NewReader(p.file), transport.Attrs{Mode: 0o640}); err != nil {
			return fmt.Errorf("write %s on the node: %w", p.path, err)
		}
	}
	for _, cl := range p.calls {
		if err := t.run(ctx, env, cl); err != nil {
			return err
		}
	}
	return nil
}

// readFirewalls reads the VM's firewall file (nil when it has none) and
// whether the datacenter firewall is on, in one round trip.
func readFirewalls(ctx context.Context, node transport.Runner, path string) (*fwFile, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	lines := []string{transport.Command("test", "-e", path), catIfExists(path), catIfExists(clusterFW)}
	res, err := transport.Batch(ctx, node, lines)
	if err != nil {
		return nil, false, err
	}
	for i, r := range res {
		if err := r.Err(lines[i]); err != nil && (i > 0 || r.ExitCode != 1) {
			return nil, false, err
		}
	}
	cluster := parseFirewall(string(res[2].Stdout))
	on := parseBool(cluster.option("enable"))
	if res[0].ExitCode != 0 {
		return nil, on, nil
	}
	return parseFirewall(string(res[1].Stdout)), on, nil
}

// fwFile is a firewall file: its options in order, its rules, and every
// other section as written.
type fwFile struct {
	options [][2]string // key (lower-case), value
	rules   []fwRule
	other   []string // other sections' lines, headers included
}

func (f *fwFile) option(key string) string {
	if f == nil {
		return ""
	}
	for _, o := range f.options {
		if o[0] == key {
			return o[1]
		}
	}
	return ""
}

var reSection = regexp.MustCompile(`^\[([A-Za-z]+)[^\]]*\]`)

// parseFirewall reads a .fw file as pve-firewall does: trimmed lines,
// '#' lines and blank lines ignored, case-insensitive section headers,
// "key: value" options; lines before any section are skipped.
func parseFirewall(text string) *fwFile {
	f := &fwFile{}
	section := ""
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if m := reSection.FindStringSubmatch(line); m != nil {
			section = strings.ToUpper(m[1])
			if section != "OPTIONS" && section != "RULES" {
				f.other = append(f.other, line)
			}
			continue
		}
		switch {
		case section == "OPTIONS" || section == "RULES":
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if section == "RULES" {
				f.rules = append(f.rules, parseRule(line))
				continue
			}
			k, v, _ := strings.Cut(line, ":")
			f.options = append(f.options, [2]string{strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)})
		case section != "" && line != "":
			f.other = append(f.other, line)
		}
	}
	return f
}

// with is f (nil: no file yet) with enable and the rules as wanted, every
// other option and section kept where it was.
func (f *fwFile) with(enabled bool, rules []fwRule) *fwFile {
	enable := [2]string{"enable", boolWord(enabled)}
	out := &fwFile{rules: rules}
	if f != nil {
		out.other = f.other
		for _, o := range f.options {
			if o[0] == "enable" {
				o, enable = enable, [2]string{}
			}
			out.options = append(out.options, o)
		}
	}
	if enable[0] != "" {
		out.options = append([][2]string{enable}, out.options...)
	}
	return out
}

// render writes the file in the form phoenix keeps it; nil renders nothing.
func (f *fwFile) render() []byte {
	if f == nil {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("[OPTIONS]\n")
	for _, o := range f.options {
		fmt.Fprintf(&b, "%s: %s\n", o[0], o[1])
	}
	b.WriteString("\n[RULES]\n")
	for _, r := range f.rules {
		b.WriteString(r.String() + "\n")
	}
	for _, l := range f.other {
		if strings.HasPrefix(l, "[") {
			b.WriteString("\n")
		}
		b.WriteString(l + "\n")
	}
	return b.Bytes()
}

// fwRule is one rule line. raw keeps a line phoenix cannot read, which then
// never equals a wanted rule.
type fwRule struct {
	raw                               string
	enabled                           bool
	dir, action, iface                string
	source, dest, proto, dport, sport string
	log, icmpType, comment            string
}

// ruleOptions maps each option spelling to its field.
var ruleOptions = map[string]func(*fwRule) *string{
	"i": func(r *fwRule) *string { return &r.iface }, "iface": func(r *fwRule) *string { return &r.iface },
	"source": func(r *fwRule) *string { return &r.source }, "dest": func(r *fwRule) *string { return &r.dest },
	"p": func(r *fwRule) *string { return &r.proto }, "proto": func(r *fwRule) *string { return &r.proto },
	"dport": func(r *fwRule) *string { return &r.dport }, "sport": func(r *fwRule) *string { return &r.sport },
	"log": func(r *fwRule) *string { return &r.log }, "icmp-type": func(r *fwRule) *string { return &r.icmpType },
}

// parseRule reads "[|]DIR ACTION [-opt value]... [# comment]" with options
// in any order and one or two dashes.
func parseRule(line string) fwRule {
	body, comment, _ := strings.Cut(line, "#")
	r := fwRule{raw: line, enabled: true, comment: strings.TrimSpace(comment)}
	body = strings.TrimSpace(body)
	if rest, ok := strings.CutPrefix(body, "|"); ok {
		r.enabled, body = false, rest
	}
	words := strings.Fields(body)
	if len(words) < 2 || len(words)%2 != 0 {
		return fwRule{raw: line}
	}
	r.dir, r.action = strings.ToUpper(words[0]), words[1]
	for i := 2; i < len(words); i += 2 {
		field, ok := ruleOptions[strings.TrimLeft(words[i], "-")]
		if !ok || !strings.HasPrefix(words[i], "-") {
			return fwRule{raw: line}
		}
		*field(&r) = words[i+1]
	}
	r.raw = ""
	return r
}

// String writes the rule in the order Proxmox writes it.
func (r fwRule) String() string {
	if r.raw != "" {
		return r.raw
	}
	var b strings.Builder
	if !r.enabled {
		b.WriteString("|")
	}
	b.WriteString(r.dir + " " + r.action)
	for _, o := range []struct{ flag, v string }{{"-i", r.iface}, {"-source", r.source}, {"-dest", r.dest},
		{"-p", r.proto}, {"-dport", r.dport}, {"-sport", r.sport}, {"-log", r.log}, {"-icmp-type", r.icmpType}} {
		if o.v != "" {
			b.WriteString(" " + o.flag + " " + o.v)
		}
	}
	if r.comment != "" {
		b.WriteString(" # " + r.comment)
	}
	return b.String()
}

// unified is the diff of two renderings of a file ("" when equal).
func unified(name string, a, b []byte) string {
	if bytes.Equal(a, b) {
		return ""
	}
	from := name
	if a == nil {
		from = "/dev/null"
	}
	d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: diffLines(a), B: diffLines(b), FromFile: from, ToFile: name, Context: 3,
	})
	return d
}

// diffLines splits rendered text, which ends in a newline, for difflib.
func diffLines(b []byte) []string {
	out := strings.SplitAfter(string(b), "\n")
	return out[:len(out)-1]
}
