package inventory

import (
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// check runs the rules the schema cannot express: per VM, then across VMs
// (duplicate vmids, clone sources, dependencies, cycles).
func (l *loader) check(cfg *Config, srcs []*vmSource) {
	byID := map[int]*vmSource{}
	var graph []*vmSource // first VM of each vmid
	for _, s := range srcs {
		l.checkVM(s)
		id := s.vm.VMID
		if id == 0 {
			continue // vmid missing or unreadable: reported already
		}
		if first, dup := byID[id]; dup {
			l.problem(s.ptr+"/vmid", "duplicate vmid %d (first at %s)", id, first.ptr)
			continue
		}
		byID[id] = s
		graph = append(graph, s)
	}
	for _, s := range graph {
		if c := s.vm.CloneFromVMID; c != 0 && byID[c] == nil {
			l.problem(s.ptr+"/clone_from_vmid", "vm %d is not defined in this file (defined: %s)", c, idList(cfg))
		}
		for i, d := range s.vm.Dependencies {
			if n, err := strconv.Atoi(d); err != nil || byID[n] == nil {
				l.warn(s.ptr+"/dependencies/"+strconv.Itoa(i), "%s is not a VM in this file (an LXC?); phoenix does not wait for it", d)
			}
		}
	}
	for _, vm := range cfg.VMs {
		vm.deps = cfg.dependsOn(vm)
	}
	l.cycles(graph, byID)
}

func (l *loader) checkVM(s *vmSource) {
	vm := s.vm
	l.checkNetwork(s.ptr+"/network_config", vm.NetworkConfig)
	l.checkTemplate(s)
	l.checkFirewall(s)
	for i, k := range vm.UserConfig.SSHAuthorizedKeys {
		l.problemIf(s.ptr+"/user_config/ssh_authorized_keys/"+strconv.Itoa(i), sshKeyProblem(k))
	}
	if a := vm.GuestSSH.Address; a != "" {
		l.problemIf(s.ptr+"/guest_ssh/address", hostProblem(a))
	}

	// Each guest path once: a second mount or file at the same place would
	// undo the first.
	used := map[string]string{} // guest path -> pointer
	guestPath := func(p, ptr, problem string) {
		switch first, dup := used[p]; {
		case problem != "":
			l.problem(ptr, "%s", problem)
		case dup:
			l.problem(ptr, "guest path %s is already used at %s", p, first)
		default:
			used[p] = ptr
		}
	}
	for i, share := range vm.NFSShares {
		m := s.mounts[i]
		l.problemIf(m.export, pathProblem(share.HostPath, "on the NFS server"))
		if !m.volume {
			l.problemIf(m.options, nfsOptionsProblem(share.Options))
		}
		guestPath(share.GuestPath, m.mountPoint, mountPointProblem(share.GuestPath))
	}
	for i, f := range vm.FileInjections {
		at := s.ptr + "/file_injections/" + strconv.Itoa(i)
		l.problemIf(at+"/source", pathProblem(f.Source, "on the Proxmox node"))
		guestPath(f.Destination, at+"/destination", destinationProblem(f.Destination))
	}
	if f := vm.FinalSnapshot; f != "" && (strings.EqualFold(f, vm.Snapshots.PreFeatures) || strings.EqualFold(f, vm.Snapshots.PostFeatures)) {
		l.problem(s.ptr+"/final_snapshot", "snapshot %q is also named in snapshots; qm refuses a second snapshot of the same name", f)
	}
	l.checkTrustedCA(s)
}

// TrustedCAFeature is the built-in feature that takes trusted_ca_files.
const TrustedCAFeature = "trusted_ca"

// checkTrustedCA checks trusted_ca_files, where they came from: the VM or
// vm_defaults.
func (l *loader) checkTrustedCA(s *vmSource) {
	vm := s.vm
	names := map[string]string{} // name in the guest -> pointer
	for i, f := range vm.TrustedCAFiles {
		at := s.caFiles + "/" + strconv.Itoa(i)
		if p := pathProblem(f, "on the Proxmox node"); p != "" {
			l.problem(at, "%s", p)
			continue
		}
		name := CAFileName(f)
		if !caNameRE.MatchString(name) {
			l.problem(at, "file name %q: want letters, digits, '.', '_' or '-' (it names the certificate in the guest)", path.Base(f))
			continue
		}
		if first, dup := names[name]; dup {
			l.problem(at, "becomes %s in the guest, as %s does: give the files different names", name, first)
			continue
		}
		names[name] = at
	}
	// trusted_ca without files is found with the feature scripts (phoenix
	// validate, plan): the original's configs name it without any.
	if len(vm.TrustedCAFiles) > 0 && s.caFiles == s.ptr+"/trusted_ca_files" && !slices.Contains(vm.Features, TrustedCAFeature) {
		l.warn(s.caFiles, "does nothing without the %s feature in features", TrustedCAFeature)
	}
}

// caNameRE is a certificate's file name in the guest.
var caNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.crt$`)

// checkNetwork checks what becomes ipconfig0, nameserver and searchdomain:
// Proxmox takes an IPv4 address in CIDR form (prefix 8 to 32) or dhcp, and
// an IPv4 gateway.
func (l *loader) checkNetwork(ptr string, n NetworkConfig) {
	var subnet netip.Prefix
	switch ip := n.IP; ip {
	case "", "dhcp":
	default:
		p, err := netip.ParsePrefix(ip)
		if err != nil || !p.Addr().Is4() || p.Bits() < 8 {
			l.problem(ptr+"/ip", "must be dhcp or an IPv4 address in CIDR form like 10.0.0.21/24 (prefix 8 to 32), not %q", ip)
			break
		}
		subnet = p
	}
	if gw := n.GW; gw != "" {
		a, err := netip.ParseAddr(gw)
		switch {
		case err != nil || !a.Is4():
			l.problem(ptr+"/gw", "must be an IPv4 address, not %q", gw)
		case n.IP == "dhcp":
			l.problem(ptr+"/gw", "is not used with ip dhcp (DHCP gives the gateway); remove gw, or give ip an address in CIDR form")
		case n.IP == "":
			l.problem(ptr+"/gw", "needs ip: the VM's address in CIDR form, in the gateway's subnet")
		case !subnet.IsValid(): // ip is wrong, and said so
		case a == subnet.Addr():
			l.problem(ptr+"/gw", "%s is the VM's own address (ip %s)", gw, n.IP)
		// A /32 has no subnet: its gateway is on-link by definition (routed
		// setups of hosting providers), and cloud-init writes it so.
		case subnet.Bits() < 32 && !subnet.Masked().Contains(a):
			l.problem(ptr+"/gw", "%s is outside the subnet of ip %s (%s): the VM could not reach it", gw, n.IP, subnet.Masked())
		}
	}
	if ns := n.Nameserver; ns != "" {
		for _, w := range strings.Fields(ns) {
			if _, err := netip.ParseAddr(w); err != nil {
				l.problem(ptr+"/nameserver", "must be IP addresses separated by spaces, not %q", ns)
				break
			}
		}
	}
	if sd := n.Searchdomain; sd != "" {
		for _, w := range strings.Fields(sd) {
			if !dnsNameRE.MatchString(w) {
				l.problem(ptr+"/searchdomain", "must be domain names separated by spaces, not %q", sd)
				break
			}
		}
	}
}

// cycles reports every dependency cycle once, at the edge that closes it.
func (l *loader) cycles(graph []*vmSource, byID map[int]*vmSource) {
	const (
		unseen = iota
		open
		done
	)
	state := map[int]int{}
	var stack []int
	var visit func(s *vmSource)
	visit = func(s *vmSource) {
		id := s.vm.VMID
		state[id] = open
		stack = append(stack, id)
		for _, e := range edges(s) {
			to := byID[e.to]
			if to == nil {
				continue
			}
			switch state[e.to] {
			case unseen:
				visit(to)
			case open:
				cycle := append(slices.Clone(stack[slices.Index(stack, e.to):]), e.to)
				l.problem(e.ptr, "dependency cycle: %s", joinIDs(cycle, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		state[id] = done
	}
	for _, s := range graph {
		if state[s.vm.VMID] == unseen {
			visit(s)
		}
	}
}

type edge struct {
	to  int
	ptr string
}

// edges are the clone source and numeric dependencies of a VM, with the
// pointer of each.
func edges(s *vmSource) []edge {
	var out []edge
	if c := s.vm.CloneFromVMID; c != 0 {
		out = append(out, edge{c, s.ptr + "/clone_from_vmid"})
	}
	for i, d := range s.vm.Dependencies {
		if n, err := strconv.Atoi(d); err == nil {
			out = append(out, edge{n, s.ptr + "/dependencies/" + strconv.Itoa(i)})
		}
	}
	return out
}

func idList(cfg *Config) string {
	ids := make([]int, 0, len(cfg.VMs))
	for _, vm := range cfg.VMs {
		if vm.VMID > 0 {
			ids = append(ids, vm.VMID)
		}
	}
	slices.Sort(ids)
	return joinIDs(slices.Compact(ids), ", ")
}

func joinIDs(ids []int, sep string) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, sep)
}
