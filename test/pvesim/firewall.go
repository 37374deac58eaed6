package pvesim

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The Proxmox firewall's state, kept where Proxmox keeps it (pve-more.md
// §2): /etc/pve/firewall/<vmid>.fw and /etc/pve/firewall/cluster.fw, read
// and written as pve-firewall does, with the pvesh endpoints of a VM's
// options and rules and the datacenter's options. pvesim filters no
// packets: there is no pve-firewall daemon, the files only hold the state.

func (s *Sim) firewallFile(name string) string { return s.path("etc/pve/firewall", name) }

// fwRule is one rule as parse_fw_rule and verify_rule leave it.
type fwRule struct {
	fields map[string]string // type, action, macro, iface, source, dest, proto, dport, sport, log, icmp-type, comment
	enable int
	ipv    int               // ipversion, 0 when unknown
	errors map[string]string // verify_rule's complaints
}

// fwConfig is a parsed .fw file. Sections pvesim does not use ([ALIASES],
// [IPSET ...], [group ...]) are kept as their lines.
type fwConfig struct {
	options map[string]string
	rules   []*fwRule
	kept    []*fwSection
}

type fwSection struct {
	header string
	lines  []string
}

var (
	fwLineTrim      = regexp.MustCompile(`^[ \t]*(.*?)[ \t]*$`)
	fwSectionRE     = regexp.MustCompile(`(?i)^\[(options|rules|aliases|ipset\s+\S+|group\s+\S+)\]\s*(#.*)?$`)
	fwRuleOptionRE  = regexp.MustCompile(`^(?:-i (\S+)|(?:-p|--?proto) (\S+)|--?dport (\S+)|--?sport (\S+)|--?source (\S+)|--?dest (\S+)|--?log (emerg|alert|crit|err|warning|notice|info|debug|nolog)|--?icmp-type (\S+))\s*`)
	fwRuleHeadRE    = regexp.MustCompile(`^(\S+)\s+(\S+)\s*`)
	fwMacroActionRE = regexp.MustCompile(`^(\S+)\((ACCEPT|DROP|REJECT)\)$`)
	fwRuleOptionKey = []string{"iface", "proto", "dport", "sport", "source", "dest", "log", "icmp-type"}
	vmOptionRE      = []*regexp.Regexp{
		regexp.MustCompile(`(?i)^(enable|dhcp|ndp|radv|macfilter|ipfilter|ips):\s*(0|1)\s*$`),
		regexp.MustCompile(`(?i)^(log_level_in|log_level_out):\s*((emerg|alert|crit|err|warning|notice|info|debug|nolog)\s*)?$`),
		regexp.MustCompile(`(?i)^(policy_(?:in|out)):\s*(ACCEPT|DROP|REJECT)\s*$`),
		regexp.MustCompile(`(?i)^(ips_queues):\s*((\d+)(:(\d+))?)\s*$`),
		regexp.MustCompile(`(?i)^(layer2_protocols):\s*(((\S+)[,]?)+)\s*$`),
	}
	clusterOptionRE = []*regexp.Regexp{
		regexp.MustCompile(`(?i)^(enable):\s*(\d+)\s*$`),
		regexp.MustCompile(`(?i)^(ebtables):\s*(0|1)\s*$`),
		regexp.MustCompile(`(?i)^(policy_(?:in|out|forward)):\s*(ACCEPT|DROP|REJECT)\s*$`),
		regexp.MustCompile(`^(log_ratelimit):\s*(\S+)\s*$`),
	}
)

// loadFirewall reads a .fw file like generic_fw_config_parser; a missing
// file is an empty config. Lines it cannot read are skipped with a warning.
func (c *call) loadFirewall(name string, cluster bool) (*fwConfig, error) {
	conf := &fwConfig{options: map[string]string{}}
	f, err := os.Open(c.firewallFile(name))
	if os.IsNotExist(err) {
		return conf, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := fwLineTrim.FindStringSubmatch(sc.Text())[1]
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		prefix := fmt.Sprintf("/etc/pve/firewall/%s (line %d)", name, n)
		if m := fwSectionRE.FindStringSubmatch(line); m != nil {
			section = strings.ToLower(strings.Fields(m[1])[0])
			if section != "options" && section != "rules" {
				conf.kept = append(conf.kept, &fwSection{header: line})
			}
			continue
		}
		switch section {
		case "":
			fmt.Fprintf(c.stderr, "%s: skip line - no section\n", prefix)
		case "options":
			k, v, err := parseFirewallOption(line, cluster)
			if err != nil {
				fmt.Fprintf(c.stderr, "%s: %v\n", prefix, err)
				continue
			}
			conf.options[k] = v
		case "rules":
			r, err := c.parseRule(line)
			if err != nil {
				fmt.Fprintf(c.stderr, "%s: %v\n", prefix, err)
				continue
			}
			conf.rules = append(conf.rules, r)
		default:
			k := conf.kept[len(conf.kept)-1]
			k.lines = append(k.lines, line)
		}
	}
	return conf, sc.Err()
}

// parseFirewallOption is parse_vmfw_option / parse_clusterfw_option.
func parseFirewallOption(line string, cluster bool) (string, string, error) {
	res := vmOptionRE
	if cluster {
		res = clusterOptionRE
	}
	for _, re := range res {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		k, v := strings.ToLower(m[1]), m[2]
		switch {
		case strings.HasPrefix(k, "policy_"):
			v = strings.ToUpper(v)
		case strings.HasPrefix(k, "log_level_"):
			v = strings.ToLower(m[3])
		case k == "enable" || len(v) == 1 && v[0] >= '0' && v[0] <= '9':
			n, _ := strconv.Atoi(v)
			v = strconv.Itoa(n)
		}
		return k, v, nil
	}
	return "", "", fmt.Errorf("can't parse option '%s'", line)
}

// parseRule is parse_fw_rule: "[|]DIR ACTION|MACRO(ACTION) [options] [# comment]".
func (c *call) parseRule(line string) (*fwRule, error) {
	r := &fwRule{fields: map[string]string{}, enable: 1}
	if i := strings.Index(line, "#"); i >= 0 {
		r.fields["comment"] = strings.TrimSpace(line[i+1:])
		line = line[:i]
	}
	if rest, ok := strings.CutPrefix(line, "|"); ok {
		r.enable, line = 0, rest
	}
	f := fwRuleHeadRE.FindStringSubmatch(line)
	if f == nil {
		return nil, fmt.Errorf("unable to parse rule: %s", line)
	}
	line = line[len(f[0]):]
	r.fields["type"], r.fields["action"] = strings.ToLower(f[1]), f[2]
	if t := r.fields["type"]; t == "in" || t == "out" || t == "forward" {
		if m := fwMacroActionRE.FindStringSubmatch(f[2]); m != nil {
			r.fields["macro"], r.fields["action"] = m[1], m[2]
		}
	}
	for line != "" {
		m := fwRuleOptionRE.FindStringSubmatch(line)
		if m == nil || r.fields["type"] == "group" && m[1] == "" {
			break
		}
		for i, k := range fwRuleOptionKey {
			if m[i+1] != "" {
				r.fields[k] = m[i+1]
			}
		}
		line = line[len(m[0]):]
	}
	if line != "" {
		return nil, fmt.Errorf("unable to parse rule parameters: %s", line)
	}
	c.verifyRule(r)
	return r, nil
}

// formatRule is $format_rules for one rule of a VM.
func formatRule(r *fwRule) string {
	var b strings.Builder
	if r.enable == 0 {
		b.WriteString("|")
	}
	b.WriteString(strings.ToUpper(r.fields["type"]))
	if m := r.fields["macro"]; m != "" {
		fmt.Fprintf(&b, " %s(%s)", m, r.fields["action"])
	} else {
		b.WriteString(" " + r.fields["action"])
	}
	if v := r.fields["iface"]; v != "" {
		b.WriteString(" -i " + v)
	}
	if r.fields["type"] != "group" {
		for _, k := range []struct{ key, flag string }{{"source", "-source"}, {"dest", "-dest"}, {"proto", "-p"},
			{"dport", "-dport"}, {"sport", "-sport"}, {"log", "-log"}, {"icmp-type", "-icmp-type"}} {
			if v := r.fields[k.key]; v != "" {
				b.WriteString(" " + k.flag + " " + v)
			}
		}
	}
	if cm := r.fields["comment"]; strings.TrimSpace(cm) != "" {
		b.WriteString(" # " + cm)
	}
	return b.String()
}

// saveFirewall is save_vmfw_conf: options (Perl writes them in hash order;
// pvesim sorts), the kept sections, rules; an empty config removes the file.
func (c *call) saveFirewall(name string, conf *fwConfig) error {
	var b strings.Builder
	if len(conf.options) > 0 {
		b.WriteString("[OPTIONS]\n\n")
		for _, k := range sortedKeys(conf.options) {
			fmt.Fprintf(&b, "%s: %s\n", k, conf.options[k])
		}
		b.WriteString("\n")
	}
	for _, k := range conf.kept {
		b.WriteString(k.header + "\n\n")
		for _, line := range k.lines {
			b.WriteString(line + "\n")
		}
		b.WriteString("\n")
	}
	if len(conf.rules) > 0 {
		b.WriteString("[RULES]\n\n")
		for _, r := range conf.rules {
			b.WriteString(formatRule(r) + "\n")
		}
		b.WriteString("\n")
	}
	path := c.firewallFile(name)
	if b.Len() == 0 {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return writeFileAtomic(path, []byte(b.String()), 0o640)
}

// lockFirewall is lock_vmfw_conf: the cluster lock firewall-<vmid> (10 s).
func (c *call) lockFirewall(vmid int, fn func() error) error {
	name := fmt.Sprintf("firewall-%d", vmid)
	path := c.path("var/lock/pvesim", name+".lock")
	if err := os.MkdirAll(c.path("var/lock/pvesim"), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	deadline := time.Now().Add(c.LockWait)
	for !tryFlock(f) {
		if time.Now().After(deadline) {
			return errorf("cfs-lock '%s' error: got lock request timeout", name)
		}
		if err := sleep(c.ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	defer unlockFile(f)
	return fn()
}

// Rule verification (verify_rule for rule_env "vm").

var (
	securityGroupRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9\-\_]+$`)
	fwAliasRE          = regexp.MustCompile(`^(dc/|guest/)?[A-Za-z][A-Za-z0-9\-\_]+$`)
	ifaceRE            = regexp.MustCompile(`^net(\d+)$`)
	portItemRE         = regexp.MustCompile(`^(\d+)(?::(\d+))?$`)
	protocolsWithPorts = map[string]bool{"udp": true, "17": true, "udplite": true, "136": true, "tcp": true, "6": true,
		"dccp": true, "33": true, "sctp": true, "132": true}
	fwMacros = strings.Fields(`Amanda Auth BGP BitTorrent BitTorrent32 Ceph CVS Citrix DAAP DCC DHCPfwd DNS Distcc FTP
		Finger GNUnet GRE Git HKP HTTP HTTPS ICPV2 ICQ IMAP IMAPS IPIP IPsec IPsecah IPsecnat IRC Jetdirect L2TP LDAP
		LDAPS MSNP MSSQL Mail MDNS Munin MySQL NNTP NNTPS NTP OSPF OpenVPN PCA PMG POP3 POP3S PPtP Ping PostgreSQL
		Printer RDP RIP RNDC Razor Rdate Rsync SANE SMB SMBswat SMTP SMTPS SNMP SPAMD SSH SVN SixXS SPICEproxy Squid
		Submission Syslog TFTP Telnet Telnets Time Trcrt VNC VNCL Web Webcache Webmin Whois`)
	icmpTypes = strings.Fields(`any echo-reply destination-unreachable network-unreachable host-unreachable
		protocol-unreachable port-unreachable fragmentation-needed source-route-failed network-unknown host-unknown
		network-prohibited host-prohibited TOS-network-unreachable TOS-host-unreachable communication-prohibited
		host-precedence-violation precedence-cutoff source-quench redirect network-redirect host-redirect
		TOS-network-redirect TOS-host-redirect echo-request router-advertisement router-solicitation time-exceeded
		ttl-zero-during-transit ttl-zero-during-reassembly parameter-problem ip-header-bad required-option-missing
		timestamp-request timestamp-reply address-mask-request address-mask-reply`)
	icmpv6Types = strings.Fields(`destination-unreachable no-route communication-prohibited beyond-scope
		address-unreachable port-unreachable failed-policy reject-route packet-too-big time-exceeded
		ttl-zero-during-transit ttl-zero-during-reassembly parameter-problem bad-header unknown-header-type
		unknown-option echo-request echo-reply router-solicitation router-advertisement neighbor-solicitation
		neighbour-solicitation neighbor-advertisement neighbour-advertisement redirect`)
)

// etcNames reads the first-column names and numbers of /etc/protocols or
// /etc/services on the node (byname and byid); a missing file knows none.
func (c *call) etcNames(file string, re *regexp.Regexp) map[string]bool {
	out := map[string]bool{}
	f, err := os.Open(c.path(file))
	if err != nil {
		fmt.Fprintf(c.stderr, "unable to read '%s' - %s\n", file, syscallText(err))
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil && !strings.HasPrefix(m[1], "#") {
			out[m[1]], out[m[2]] = true, true
		}
	}
	return out
}

var (
	protocolLineRE = regexp.MustCompile(`^(\S+)\s+(\d+)(?:\s+.*)?$`)
	serviceLineRE  = regexp.MustCompile(`^(\S+)\s+(\S+)/(?:tcp|udp|sctp).*$`)
)

// checkProtocol is pve_fw_verify_protocol_spec.
func (c *call) checkProtocol(proto string) string {
	if proto == "icmpv6" || c.etcNames("/etc/protocols", protocolLineRE)[proto] {
		return ""
	}
	return fmt.Sprintf("unknown protocol '%s'", proto)
}

// checkPorts is parse_port_name_number_or_range.
func (c *call) checkPorts(spec string, dport bool) string {
	items := strings.Split(spec, ",")
	count, icmpPort := 0, false
	var services map[string]bool
	for _, item := range items {
		if item == "" {
			return "extraneous commas in list"
		}
		if m := portItemRE.FindStringSubmatch(item); m != nil {
			a, _ := strconv.Atoi(m[1])
			if a > 65535 {
				return fmt.Sprintf("invalid port '%s'", m[1])
			}
			count++
			if m[2] != "" {
				count++
				b, _ := strconv.Atoi(m[2])
				if b > 65535 {
					return fmt.Sprintf("invalid port '%s'", m[2])
				}
				if a > b {
					return fmt.Sprintf("backwards range '%s:%s' not allowed, did you mean '%s:%s'?", m[1], m[2], m[2], m[1])
				}
			}
			continue
		}
		if dport && (slices.Contains(icmpTypes, item) || slices.Contains(icmpv6Types, item)) {
			icmpPort = true
			continue
		}
		if services == nil {
			services = c.etcNames("/etc/services", serviceLineRE)
		}
		if !services[item] {
			return fmt.Sprintf("invalid port '%s'", item)
		}
	}
	if icmpPort && count > 0 {
		return "ICMP ports not allowed in port range"
	}
	if count > 15 {
		return "too many entries in port list (> 15 numbers)"
	}
	return ""
}

// checkAddresses is parse_address_list; it returns the IP version (0 for
// ipsets and aliases) or the reason the list is bad.
func checkAddresses(list string) (int, string) {
	if strings.HasPrefix(list, "+") || fwAliasRE.MatchString(list) {
		return 0, ""
	}
	items := strings.Split(list, ",")
	version, isRange := 0, false
	for _, item := range items {
		if item == "" {
			return 0, "extraneous commas in list"
		}
		v := 0
		if from, to, ok := strings.Cut(item, "-"); ok {
			a, err1 := netip.ParseAddr(from)
			b, err2 := netip.ParseAddr(to)
			if err1 != nil || err2 != nil {
				return 0, fmt.Sprintf("invalid IP address: Invalid range %s", item)
			}
			isRange, v = true, map[bool]int{true: 4, false: 6}[a.Is4() && b.Is4()]
		} else if p, err := netip.ParsePrefix(item); err == nil {
			v = map[bool]int{true: 4, false: 6}[p.Addr().Is4()]
		} else if a, err := netip.ParseAddr(item); err == nil {
			v = map[bool]int{true: 4, false: 6}[a.Is4()]
		} else {
			return 0, fmt.Sprintf("invalid IP address: Invalid IP %s", item)
		}
		if version != 0 && v != version {
			return 0, fmt.Sprintf("detected mixed ipv4/ipv6 addresses in address list '%s'", list)
		}
		version = v
	}
	if isRange && len(items) > 1 {
		return 0, "you can't use a range in a list"
	}
	return version, ""
}

// verifyRule is verify_rule with noerr: it records errors on the rule and
// sets ipversion. The first error is what the API reports.
func (c *call) verifyRule(r *fwRule) (firstKey, firstMsg string) {
	r.errors, r.ipv = map[string]string{}, 0
	add := func(k, msg string) {
		if firstKey == "" {
			firstKey, firstMsg = k, msg
		}
		if _, ok := r.errors[k]; !ok {
			r.errors[k] = msg
		}
	}
	setVersion := func(v int) {
		if v != 0 && r.ipv != 0 && v != r.ipv {
			add("ipversion", "detected mixed ipv4/ipv6 addresses in rule")
			return
		}
		if v != 0 {
			r.ipv = v
		}
	}
	f := r.fields
	typ, action := f["type"], f["action"]
	if typ == "" {
		add("type", "missing property")
	}
	if action == "" {
		add("action", "missing property")
	}
	switch typ {
	case "":
	case "in", "out":
		if action != "" && action != "ACCEPT" && action != "DROP" && action != "REJECT" {
			add("action", fmt.Sprintf("unknown action '%s'", action))
		}
	case "group":
		if action != "" && !securityGroupRE.MatchString(action) {
			add("action", "invalid characters in security group name")
		}
	default:
		add("type", fmt.Sprintf("invalid rule type '%s' for rule_env 'vm'", typ))
	}
	if v := f["iface"]; v != "" && !ifaceRE.MatchString(v) {
		add("iface", `value does not match the regex pattern 'net\d+'`)
	}
	if m := f["macro"]; m != "" {
		found := false
		for _, name := range fwMacros {
			if strings.EqualFold(name, m) {
				f["macro"], found = name, true
			}
		}
		if !found {
			add("macro", fmt.Sprintf("unknown macro '%s'", m))
		}
	}
	proto := f["proto"]
	isICMP := proto == "icmp" || proto == "icmpv6" || proto == "ipv6-icmp"
	if proto != "" {
		if msg := c.checkProtocol(proto); msg != "" {
			add("proto", msg)
		}
		setVersion(map[string]int{"icmp": 4, "icmpv6": 6, "ipv6-icmp": 6}[proto])
	}
	if v := f["dport"]; v != "" {
		if msg := c.checkPorts(v, isICMP); msg != "" {
			add("dport", msg)
		}
		if proto == "" {
			add("proto", "missing property - 'dport' requires this property")
		}
		if !protocolsWithPorts[proto] && !isICMP {
			add("dport", fmt.Sprintf("protocol '%s' does not support ports", proto))
		}
	}
	if t := f["icmp-type"]; t != "" {
		if !isICMP {
			add("proto", "missing property - 'icmp-type' requires this property")
		}
		if f["dport"] != "" {
			add("icmp-type", "'icmp-type' cannot be specified together with 'dport'")
		}
		if proto == "icmp" && !slices.Contains(icmpTypes, t) || (proto == "icmpv6" || proto == "ipv6-icmp") && !slices.Contains(icmpv6Types, t) {
			add("icmp-type", fmt.Sprintf("invalid icmp-type '%s' for proto '%s'", t, proto))
		}
	}
	if v := f["sport"]; v != "" {
		if msg := c.checkPorts(v, false); msg != "" {
			add("sport", msg)
		}
		if proto == "" {
			add("proto", "missing property - 'sport' requires this property")
		}
		if !protocolsWithPorts[proto] {
			add("sport", fmt.Sprintf("protocol '%s' does not support ports", proto))
		}
	}
	for _, k := range []string{"source", "dest"} {
		if v := f[k]; v != "" {
			version, msg := checkAddresses(v)
			if msg != "" {
				add(k, msg)
			}
			setVersion(version)
		}
	}
	return firstKey, firstMsg
}

// apiRule is a rule as the API returns it (without pos and digest).
func (r *fwRule) apiRule() map[string]any {
	out := map[string]any{"enable": r.enable}
	for k, v := range r.fields {
		if v != "" {
			out[k] = v
		}
	}
	if r.ipv != 0 {
		out["ipversion"] = r.ipv
	}
	if len(r.errors) > 0 {
		errs := map[string]any{}
		for k, v := range r.errors {
			errs[k] = v
		}
		out["errors"] = errs
	}
	return out
}

// digestOf is copy_opject_with_digest / copy_list_with_digest: SHA-1 over
// "key:value\n" of each object's scalar values, keys sorted.
func digestOf(objects ...map[string]any) string {
	h := sha1.New()
	for _, o := range objects {
		keys := make([]string, 0, len(o))
		for k := range o {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if _, isMap := o[k].(map[string]any); isMap {
				continue
			}
			fmt.Fprintf(h, "%s:%v\n", k, o[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// rulesWithDigest is GET .../firewall/rules: each rule with the list's
// digest and its position.
func rulesWithDigest(rules []*fwRule) ([]map[string]any, string) {
	list := make([]map[string]any, len(rules))
	for i, r := range rules {
		list[i] = r.apiRule()
	}
	digest := digestOf(list...)
	for i := range list {
		list[i]["digest"], list[i]["pos"] = digest, i
	}
	return list, digest
}

func optionsWithDigest(opts map[string]string) (map[string]any, string) {
	out := map[string]any{}
	for k, v := range opts {
		if n, err := strconv.Atoi(v); err == nil && (k == "enable" || len(v) == 1) {
			out[k] = n
		} else {
			out[k] = v
		}
	}
	digest := digestOf(out)
	out["digest"] = digest
	return out, digest
}
