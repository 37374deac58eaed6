package pvesim

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// The pvesh firewall endpoints (pve-firewall's API2/Firewall/VM.pm,
// Rules.pm, Cluster.pm): a VM's options and rules, the datacenter's options.

var (
	fwLogLevels       = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"}
	fwPolicies        = []string{"ACCEPT", "REJECT", "DROP"}
	vmFirewallBools   = []string{"enable", "macfilter", "dhcp", "ndp", "radv", "ipfilter"}
	vmFirewallOptions = append([]string{"policy_in", "policy_out", "log_level_in", "log_level_out"}, vmFirewallBools...)
	fwRuleFields      = []string{"type", "action", "macro", "iface", "source", "dest", "proto", "dport", "sport", "log", "icmp-type", "comment"}
	fwPath            = vmPath + `/firewall`
)

func firewallEndpoints() []endpoint {
	re := regexp.MustCompile
	digest := prop{name: "digest", maxLen: 64}
	optionProps := []prop{
		{name: "policy_in", enum: fwPolicies}, {name: "policy_out", enum: fwPolicies},
		{name: "log_level_in", enum: fwLogLevels}, {name: "log_level_out", enum: fwLogLevels},
		{name: "delete"}, digest,
	}
	for _, b := range vmFirewallBools {
		optionProps = append(optionProps, boolProp(b))
	}
	ruleProps := []prop{
		{name: "type", enum: []string{"in", "out", "forward", "group"}},
		{name: "action", maxLen: 20, format: func(v string) string {
			if len(v) < 2 {
				return "value must be at least 2 characters long"
			}
			if !securityGroupRE.MatchString(v) {
				return "value does not match the regex pattern"
			}
			return ""
		}},
		{name: "macro", maxLen: 128}, strProp("iface"), {name: "source", maxLen: 512}, {name: "dest", maxLen: 512},
		strProp("proto"), intProp("enable", 0), {name: "log", enum: fwLogLevels}, strProp("sport"), strProp("dport"),
		strProp("comment"), strProp("icmp-type"), intProp("pos", 0), digest,
	}
	updateProps := append(append([]prop{}, ruleProps...), intProp("moveto", 0), prop{name: "delete"})
	required := func(ps []prop, names ...string) []prop {
		out := append([]prop{}, ps...)
		for i := range out {
			for _, n := range names {
				if out[i].name == n {
					out[i].required = true
				}
			}
		}
		return out
	}
	return []endpoint{
		{"get", re(fwPath + `/options$`), nil, (*call).apiFirewallOptions, false},
		{"set", re(fwPath + `/options$`), optionProps, (*call).apiSetFirewallOptions, false},
		{"get", re(fwPath + `/rules$`), nil, (*call).apiFirewallRules, true},
		{"get", re(fwPath + `/rules/(\d+)$`), nil, (*call).apiFirewallRule, true},
		{"create", re(fwPath + `/rules$`), required(ruleProps, "type", "action"), (*call).apiCreateFirewallRule, true},
		{"set", re(fwPath + `/rules/(\d+)$`), updateProps, (*call).apiUpdateFirewallRule, true},
		{"delete", re(fwPath + `/rules/(\d+)$`), []prop{digest}, (*call).apiDeleteFirewallRule, true},
		{"get", re(`^/cluster/firewall/options$`), nil, (*call).apiClusterFirewallOptions, false},
	}
}

func vmFirewallName(m []string) (int, string) {
	vmid := pathVMID(m)
	return vmid, fmt.Sprintf("%d.fw", vmid)
}

func (c *call) apiFirewallOptions(m []string, _ *params) (any, error) {
	_, name := vmFirewallName(m)
	conf, err := c.loadFirewall(name, false)
	if err != nil {
		return nil, err
	}
	opts, _ := optionsWithDigest(conf.options)
	return opts, nil
}

func (c *call) apiClusterFirewallOptions(_ []string, _ *params) (any, error) {
	conf, err := c.loadFirewall("cluster.fw", true)
	if err != nil {
		return nil, err
	}
	opts, _ := optionsWithDigest(conf.options)
	return opts, nil
}

// checkDigest is assert_if_modified.
func checkDigest(current string, p *params) error {
	if given := p.get("digest"); given != "" && given != current {
		return errorf("detected modified configuration - file changed by other user? Try again.")
	}
	return nil
}

func (c *call) apiSetFirewallOptions(m []string, p *params) (any, error) {
	vmid, name := vmFirewallName(m)
	return nil, c.lockFirewall(vmid, func() error {
		conf, err := c.loadFirewall(name, false)
		if err != nil {
			return err
		}
		_, digest := optionsWithDigest(conf.options)
		if err := checkDigest(digest, p); err != nil {
			return err
		}
		for _, k := range splitList(p.get("delete")) {
			if !slices.Contains(vmFirewallOptions, k) {
				return badParam("delete", fmt.Sprintf("no such option '%s'", k))
			}
			delete(conf.options, k)
		}
		for _, k := range vmFirewallOptions {
			if v, ok := p.vals[k]; ok {
				conf.options[k] = v
			}
		}
		return c.saveFirewall(name, conf)
	})
}

func (c *call) apiFirewallRules(m []string, _ *params) (any, error) {
	_, name := vmFirewallName(m)
	conf, err := c.loadFirewall(name, false)
	if err != nil {
		return nil, err
	}
	list, _ := rulesWithDigest(conf.rules)
	out := make([]any, len(list))
	for i, r := range list {
		out[i] = r
	}
	return out, nil
}

func rulePos(m []string) int {
	pos, _ := strconv.Atoi(m[3])
	return pos
}

func (c *call) apiFirewallRule(m []string, _ *params) (any, error) {
	_, name := vmFirewallName(m)
	conf, err := c.loadFirewall(name, false)
	if err != nil {
		return nil, err
	}
	list, _ := rulesWithDigest(conf.rules)
	if pos := rulePos(m); pos < len(list) {
		return list[pos], nil
	}
	return nil, errorf("no rule at position %d", rulePos(m))
}

// ruleFormatErrors are the schema's format checks of rule parameters
// (pve-fw-protocol-spec, -dport-spec, -sport-spec, -addr-spec,
// -icmp-type-spec, pve-iface), reported together before the handler runs.
func (c *call) ruleFormatErrors(p *params) error {
	errs := map[string]string{}
	check := func(k, reason string) {
		if reason != "" {
			errs[k] = "invalid format - " + reason
		}
	}
	if v := p.get("proto"); v != "" {
		check("proto", c.checkProtocol(v))
	}
	if v := p.get("dport"); v != "" && v != "-" {
		check("dport", c.checkPorts(v, true))
	}
	if v := p.get("sport"); v != "" && v != "-" {
		check("sport", c.checkPorts(v, false))
	}
	for _, k := range []string{"source", "dest"} {
		if v := p.get(k); v != "" && v != "-" {
			_, reason := checkAddresses(v)
			check(k, reason)
		}
	}
	if v := p.get("icmp-type"); v != "" && v != "-" && !slices.Contains(icmpTypes, v) && !slices.Contains(icmpv6Types, v) {
		check("icmp-type", fmt.Sprintf("invalid icmp-type value '%s'", v))
	}
	if len(errs) > 0 {
		return badParams(errs)
	}
	return nil
}

// copyRuleData is copy_rule_data: given fields are set, ” and '-' delete.
func copyRuleData(r *fwRule, p *params) {
	for _, k := range fwRuleFields {
		v, ok := p.vals[k]
		if !ok {
			continue
		}
		if v == "" || v == "-" {
			delete(r.fields, k)
			continue
		}
		r.fields[k] = v
	}
	if p.has("enable") {
		r.enable = int(p.num("enable", 0))
	}
}

// verifyForAPI is verify_rule without noerr: the first error is a 400.
func (c *call) verifyForAPI(r *fwRule) error {
	if k, msg := c.verifyRule(r); k != "" {
		return badParam(k, msg)
	}
	return nil
}

func (c *call) apiCreateFirewallRule(m []string, p *params) (any, error) {
	if err := c.ruleFormatErrors(p); err != nil {
		return nil, err
	}
	vmid, name := vmFirewallName(m)
	return nil, c.lockFirewall(vmid, func() error {
		conf, err := c.loadFirewall(name, false)
		if err != nil {
			return err
		}
		r := &fwRule{fields: map[string]string{}}
		copyRuleData(r, p)
		if err := c.verifyForAPI(r); err != nil {
			return err
		}
		// A new rule goes on top (pos is ignored), disabled unless enabled.
		conf.rules = append([]*fwRule{r}, conf.rules...)
		return c.saveFirewall(name, conf)
	})
}

func (c *call) apiUpdateFirewallRule(m []string, p *params) (any, error) {
	if err := c.ruleFormatErrors(p); err != nil {
		return nil, err
	}
	return nil, c.changeRule(m, p, func(conf *fwConfig, pos int) error {
		r := conf.rules[pos]
		if p.has("moveto") && int(p.num("moveto", 0)) != pos {
			moveto := int(p.num("moveto", 0))
			var out []*fwRule
			for i, x := range conf.rules {
				if i == pos {
					continue
				}
				if i == moveto {
					out = append(out, r)
				}
				out = append(out, x)
			}
			if moveto >= len(conf.rules) {
				out = append(out, r)
			}
			conf.rules = out
			return nil
		}
		copyRuleData(r, p)
		for _, k := range splitList(p.get("delete")) {
			switch {
			case k == "type" || k == "action":
				return badParam("delete", fmt.Sprintf("unable to delete required property '%s'", k))
			case k == "enable":
				r.enable = 1
			case slices.Contains(fwRuleFields, k) || k == "pos" || k == "digest":
				delete(r.fields, k)
			default:
				return badParam("delete", fmt.Sprintf("no such property ('%s')", k))
			}
		}
		return c.verifyForAPI(r)
	})
}

func (c *call) apiDeleteFirewallRule(m []string, p *params) (any, error) {
	return nil, c.changeRule(m, p, func(conf *fwConfig, pos int) error {
		conf.rules = append(conf.rules[:pos], conf.rules[pos+1:]...)
		return nil
	})
}

// changeRule runs change on the rule at the path's position under the
// VM's firewall lock (digest checked first) and saves the file after it.
func (c *call) changeRule(m []string, p *params, change func(conf *fwConfig, pos int) error) error {
	vmid, name := vmFirewallName(m)
	pos := rulePos(m)
	return c.lockFirewall(vmid, func() error {
		conf, err := c.loadFirewall(name, false)
		if err != nil {
			return err
		}
		_, digest := rulesWithDigest(conf.rules)
		if err := checkDigest(digest, p); err != nil {
			return err
		}
		if pos >= len(conf.rules) {
			return errorf("no rule at position %d", pos)
		}
		if err := change(conf, pos); err != nil {
			return err
		}
		return c.saveFirewall(name, conf)
	})
}
