package pve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// The files pmxcfs generates from its own state (pve-more.md §3.1, §3.2):
// the same on every node of a cluster, and current at once (unlike
// /cluster/resources, whose names lag up to 10 s behind pvestatd).
const (
	vmListFile  = "/etc/pve/.vmlist"
	membersFile = "/etc/pve/.members"
)

// guestNames prints "PATH NAME" for the name of every VM config's main
// section (snapshot sections copy it; they start at the first "[").
const guestNames = `set -- /etc/pve/nodes/*/qemu-server/*.conf; [ -e "$1" ] || exit 0
exec awk 'FNR == 1 { main = 1 } /^\[/ { main = 0 } main && /^name:/ { print FILENAME, $2 }' "$@"`

// clusterLines are the reads of a cluster view, run at the same time in one
// round trip.
func clusterLines() []string {
	return []string{catIfExists(vmListFile), catIfExists(membersFile), guestNames}
}

// ReadCluster reads where the guests of the node's cluster live, with the
// cluster's members and each VM's name, in one round trip. A node without
// /etc/pve/.vmlist (no pmxcfs) has no view: nil, and no error.
func ReadCluster(ctx context.Context, node transport.Runner) (*tasks.ClusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	lines := clusterLines()
	res, err := transport.BatchParallel(ctx, node, lines)
	if err != nil {
		return nil, fmt.Errorf("read the cluster's vm list: %w", err)
	}
	for i, r := range res {
		if err := r.Err(lines[i]); err != nil {
			return nil, fmt.Errorf("read the cluster's vm list: %w", err)
		}
	}
	if len(bytes.TrimSpace(res[0].Stdout)) == 0 {
		return nil, nil
	}
	return parseCluster(res[0].Stdout, res[1].Stdout, res[2].Stdout)
}

func parseCluster(vmlist, members, names []byte) (*tasks.ClusterView, error) {
	v := &tasks.ClusterView{}
	guests, err := ParseVMList(vmlist)
	if err != nil {
		return nil, err
	}
	v.Guests = guests
	if len(bytes.TrimSpace(members)) > 0 {
		m, err := ParseMembers(members)
		if err != nil {
			return nil, err
		}
		v.Local, v.Cluster, v.Members = m.NodeName, m.Cluster, m.Nodes
	}
	if len(v.Members) == 0 && v.Local != "" {
		v.Members = map[string]tasks.ClusterMember{v.Local: {Online: true}}
	}
	sc := bufio.NewScanner(bytes.NewReader(names))
	for sc.Scan() {
		file, name, ok := strings.Cut(sc.Text(), " ")
		id, err := strconv.Atoi(strings.TrimSuffix(path.Base(file), ".conf"))
		if !ok || err != nil {
			continue
		}
		// The directory names the owner; .vmlist says the same, and wins.
		if g, ok := v.Guests[id]; ok && g.Node == path.Base(path.Dir(path.Dir(file))) {
			g.Name = name
			v.Guests[id] = g
		}
	}
	return v, nil
}

// ParseVMList reads /etc/pve/.vmlist: JSON printed by hand, in hash order
// (pve-more.md §3.2). Every guest type is kept: a container's VMID is taken
// as much as a VM's.
func ParseVMList(b []byte) (map[int]tasks.ClusterGuest, error) {
	var f struct {
		IDs map[string]struct {
			Node string `json:"node"`
			Type string `json:"type"`
		} `json:"ids"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", vmListFile, err)
	}
	out := make(map[int]tasks.ClusterGuest, len(f.IDs))
	for id, g := range f.IDs {
		n, err := strconv.Atoi(id)
		if err != nil || g.Node == "" {
			return nil, fmt.Errorf("%s: entry %q: not a vmid with its node", vmListFile, id)
		}
		out[n] = tasks.ClusterGuest{Node: g.Node, Type: g.Type}
	}
	return out, nil
}

// Members is /etc/pve/.members: the node it was read on and, in a cluster,
// the cluster's name and nodes.
type Members struct {
	NodeName string
	Cluster  string
	Nodes    map[string]tasks.ClusterMember
}

// ParseMembers reads /etc/pve/.members (pve-more.md §3.2). A standalone
// node has only "nodename".
func ParseMembers(b []byte) (Members, error) {
	var f struct {
		NodeName string `json:"nodename"`
		Cluster  *struct {
			Name string `json:"name"`
		} `json:"cluster"`
		NodeList map[string]struct {
			Online int    `json:"online"`
			IP     string `json:"ip"`
		} `json:"nodelist"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return Members{}, fmt.Errorf("%s: %w", membersFile, err)
	}
	m := Members{NodeName: f.NodeName}
	if f.Cluster != nil {
		m.Cluster = f.Cluster.Name
	}
	if len(f.NodeList) > 0 {
		m.Nodes = map[string]tasks.ClusterMember{}
		for name, n := range f.NodeList {
			m.Nodes[name] = tasks.ClusterMember{Online: n.Online == 1, IP: n.IP}
		}
	}
	return m, nil
}
