package inventory

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Proxmox skips a firewall rule it cannot read and says nothing (pve-more.md
// §2.2): a typo would silently open or close a port. So every rule is
// checked here, by the rules pve-firewall applies (verify_rule).

// protocols are the names of Debian's /etc/protocols (what Proxmox checks
// proto against on the node), plus icmpv6, which Proxmox adds.
var protocols = []string{
	"ip", "hopopt", "icmp", "igmp", "ggp", "ipencap", "st", "tcp", "egp", "igp", "pup", "udp", "hmp",
	"xns-idp", "rdp", "iso-tp4", "dccp", "xtp", "ddp", "idpr-cmtp", "ipv6", "ipv6-route", "ipv6-frag",
	"idrp", "rsvp", "gre", "esp", "ah", "skip", "ipv6-icmp", "ipv6-nonxt", "ipv6-opts", "rspf", "vmtp",
	"eigrp", "ospf", "ax.25", "ipip", "etherip", "encap", "pim", "ipcomp", "vrrp", "l2tp", "isis", "sctp",
	"fc", "mobility-header", "udplite", "mpls-in-ip", "manet", "hip", "shim6", "wesp", "rohc", "ethernet",
	"icmpv6",
}

// portProtocols are the protocols that have ports, by name and number.
var portProtocols = []string{"tcp", "udp", "udplite", "dccp", "sctp", "6", "17", "136", "33", "132"}

var (
	serviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	// An IP set (+name) or an alias (name), optionally scoped dc/ or guest/.
	setOrAliasRE = regexp.MustCompile(`^\+?((dc|guest)/)?[A-Za-z][A-Za-z0-9_-]*$`)
)

// checkFirewall checks each rule and writes it as Proxmox wants it: type
// lower-case, action upper-case, proto lower-case, port as dport, the
// comment trimmed (Proxmox trims it when it reads the file).
func (l *loader) checkFirewall(s *vmSource) {
	fw := s.vm.Firewall
	if fw == nil {
		return
	}
	for i := range fw.Rules {
		r := &fw.Rules[i]
		at := s.ptr + "/firewall/rules/" + strconv.Itoa(i)
		dportKey := "dport" // where the destination ports were written
		if r.Port != "" {
			if r.DPort != "" {
				l.problem(at+"/port", "port is the original's name for dport: give one of them")
			}
			r.DPort, r.Port, dportKey = r.Port, "", "port"
		}
		r.Type, r.Action, r.Proto = strings.ToLower(r.Type), strings.ToUpper(r.Action), strings.ToLower(r.Proto)
		r.Comment = strings.TrimSpace(r.Comment)
		if r.Type != "in" && r.Type != "out" {
			l.problem(at+"/type", "must be in or out, not %q", r.Type)
		}
		if !slices.Contains([]string{"ACCEPT", "DROP", "REJECT"}, r.Action) {
			l.problem(at+"/action", "must be ACCEPT, DROP or REJECT, not %q", r.Action)
		}
		l.problemIf(at+"/proto", protoProblem(r.Proto))
		for _, p := range []struct{ key, value string }{{dportKey, r.DPort}, {"sport", r.SPort}} {
			if p.value == "" {
				continue
			}
			ptr := at + "/" + p.key
			switch msg := portsProblem(p.value); {
			case msg != "":
				l.problem(ptr, "%s", msg)
			case !slices.Contains(portProtocols, r.Proto):
				l.problem(ptr, "needs proto tcp, udp, udplite, dccp or sctp (%s has no ports)", protoWord(r.Proto))
			}
		}
		version := 0
		switch r.Proto {
		case "icmp":
			version = 4
		case "icmpv6", "ipv6-icmp":
			version = 6
		}
		for _, a := range []struct{ key, value string }{{"source", r.Source}, {"dest", r.Dest}} {
			if a.value == "" {
				continue
			}
			v, msg := addressProblem(a.value)
			switch {
			case msg != "":
				l.problem(at+"/"+a.key, "%s", msg)
			case v != 0 && version != 0 && v != version:
				l.problem(at+"/"+a.key, "IPv%d addresses in a rule for %s (IPv%d)", v, r.Proto, version)
			case v != 0:
				version = v
			}
		}
	}
}

func protoWord(p string) string {
	if p == "" {
		return "a rule without proto"
	}
	return p
}

func protoProblem(p string) string {
	if p == "" || slices.Contains(protocols, p) {
		return ""
	}
	if n, err := strconv.Atoi(p); err == nil && n >= 0 && n <= 255 && strconv.Itoa(n) == p {
		return ""
	}
	return fmt.Sprintf("must be a protocol name such as tcp, udp, icmp or icmpv6, or a number from 0 to 255, not %q (Proxmox would skip the rule)", p)
}

// portsProblem judges a port list: numbers, ranges lo:hi and service
// names, comma-separated.
func portsProblem(s string) string {
	for _, el := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(el, ":")
		if !isRange && serviceNameRE.MatchString(el) {
			continue
		}
		a, errA := strconv.Atoi(lo)
		b, errB := a, error(nil)
		if isRange {
			b, errB = strconv.Atoi(hi)
		}
		if errA != nil || errB != nil || a < 0 || b > 65535 || a > b {
			return fmt.Sprintf("must be ports (0 to 65535), ranges lo:hi or service names, comma-separated, such as 22, 80,443 or 8000:8080; not %q", s)
		}
	}
	return ""
}

// addressProblem judges a source or destination: addresses, CIDRs, ranges
// a-b, IP sets and aliases, comma-separated, not mixing IPv4 and IPv6.
// version is the IP version of its literal addresses (0: none).
func addressProblem(s string) (version int, problem string) {
	if len(s) > 512 {
		return 0, "must be at most 512 characters"
	}
	for _, el := range strings.Split(s, ",") {
		var addrs []netip.Addr
		if from, to, ok := strings.Cut(el, "-"); ok && !setOrAliasRE.MatchString(el) {
			a, errA := netip.ParseAddr(from)
			b, errB := netip.ParseAddr(to)
			if errA != nil || errB != nil || a.Is4() != b.Is4() || b.Less(a) {
				return 0, fmt.Sprintf("%q is not an address range a-b", el)
			}
			addrs = append(addrs, a, b)
		} else if p, err := netip.ParsePrefix(el); err == nil {
			if p.Bits() == 0 {
				return 0, fmt.Sprintf("%q: a /0 network is not allowed (leave source or dest out to match everything)", el)
			}
			addrs = append(addrs, p.Addr())
		} else if a, err := netip.ParseAddr(el); err == nil {
			addrs = append(addrs, a)
		} else if !setOrAliasRE.MatchString(el) {
			return 0, fmt.Sprintf("must be addresses, CIDRs, ranges a-b, +ipset or alias names, comma-separated without spaces; %q is none of them", el)
		}
		for _, a := range addrs {
			v := 6
			if a.Is4() {
				v = 4
			}
			if version != 0 && v != version {
				return 0, fmt.Sprintf("mixes IPv4 and IPv6 addresses in %q (Proxmox refuses that)", s)
			}
			version = v
		}
	}
	return version, ""
}
