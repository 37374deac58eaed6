package inventory

import (
	"net/netip"
	"path"
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
	switch ip := vm.NetworkConfig.IP; {
	case ip == "" || ip == "dhcp":
	default:
		if _, err := netip.ParsePrefix(ip); err != nil {
			l.problem(s.ptr+"/network_config/ip", "must be dhcp or an address in CIDR form like 10.0.0.21/24, not %q", ip)
		}
	}
	if gw := vm.NetworkConfig.GW; gw != "" {
		if _, err := netip.ParseAddr(gw); err != nil {
			l.problem(s.ptr+"/network_config/gw", "must be an IP address, not %q", gw)
		}
	}
	for _, p := range s.hostPaths {
		if !path.IsAbs(p.path) {
			l.problem(p.ptr, "must be an absolute path on the NFS server, not %q", p.path)
		}
	}
	used := map[string]string{} // cleaned guest path -> pointer
	for _, p := range s.guestPaths {
		if !path.IsAbs(p.path) {
			l.problem(p.ptr, "must be an absolute path in the guest, not %q", p.path)
			continue
		}
		clean := path.Clean(p.path)
		if first, dup := used[clean]; dup {
			l.problem(p.ptr, "guest path %s is already used at %s", clean, first)
			continue
		}
		used[clean] = p.ptr
	}
	if f := vm.FinalSnapshot; f != "" && (strings.EqualFold(f, vm.Snapshots.PreFeatures) || strings.EqualFold(f, vm.Snapshots.PostFeatures)) {
		l.problem(s.ptr+"/final_snapshot", "snapshot %q is also named in snapshots; qm refuses a second snapshot of the same name", f)
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
