package rig

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A cluster rig (Options.Nodes 2 or 3) is several simulated nodes of one
// Proxmox cluster on the rig network, as pve-more.md §3 describes it:
//
//   - /etc/pve is one folder of the host (<dir>/pve), bind-mounted into
//     every node, as pmxcfs shows every node the same files: nodes/NAME/
//     qemu-server/ per node, .vmlist (kept by pvesim from all nodes'
//     directories), storage.cfg with the local storages and a shared one
//     (nfs-shared), firewall/.
//   - What pmxcfs shows each node differently goes through a per-node link:
//     /etc/pve/local and /etc/pve/qemu-server lead to /etc/pvesim/local,
//     which on each node is a symlink to /etc/pve/nodes/ITS-NAME;
//     /etc/pve/.members to /etc/pvesim/members, the node's own copy (its
//     nodename).
//   - Each node has its own host keys, sshd (published on 127.0.0.1, with a
//     switch to turn it off: SetNodeSSH), PVESIM_NODE and address; they share
//     the rig folder (/rig, the agent sockets' folder and /export) and the
//     Docker engine, so a VM's disks (images) and its container are the same
//     whichever node runs it.

// ClusterNode is one node of a cluster rig.
type ClusterNode struct {
	Name string `json:"name"` // Proxmox node name, and its hostname
	Port int    `json:"port"` // its sshd, published on NodeHost
	IP   string `json:"ip"`   // on the rig network
}

// ClusterNodeName is the name of a cluster rig's i-th node (1-based).
func ClusterNodeName(i int) string { return "pve" + strconv.Itoa(i) }

// emptyVMList is pmxcfs's .vmlist of a cluster without guests: pmxcfs
// always has one (pvesim keeps it once a VM is made).
const emptyVMList = "{\n\"version\": 1\n\n}\n"

// ClusterName is the cluster's name in .members.
const ClusterName = "phoenix-rig"

// SharedStorage is the cluster rig's shared storage (an NFS storage, which
// Proxmox always counts as shared).
const SharedStorage = "nfs-shared"

// nodeSpec is one node container to start.
type nodeSpec struct {
	name, ip, container string
	host                string
	port                int
}

func (n nodeSpec) addr() string { return net.JoinHostPort(n.host, strconv.Itoa(n.port)) }

// nodeSpecs are the rig's node containers, the first one first.
func (r *Rig) nodeSpecs() []nodeSpec {
	if len(r.Cluster) == 0 {
		return []nodeSpec{{name: PVENode, ip: r.host(2), container: "phoenix-rig-" + r.ID + "-node", host: r.NodeHost, port: r.NodePort}}
	}
	out := make([]nodeSpec, len(r.Cluster))
	for i, n := range r.Cluster {
		out[i] = nodeSpec{name: n.Name, ip: n.IP, container: r.clusterContainer(n.Name), host: r.NodeHost, port: n.Port}
	}
	return out
}

func (r *Rig) clusterContainer(name string) string { return "phoenix-rig-" + r.ID + "-node-" + name }

// node returns the node called name.
func (r *Rig) node(name string) (nodeSpec, error) {
	for _, n := range r.nodeSpecs() {
		if n.name == name {
			return n, nil
		}
	}
	return nodeSpec{}, fmt.Errorf("rig %s has no node %q", r.ID, name)
}

// setPort records the published sshd port of node name; the first node's
// is NodePort too.
func (r *Rig) setPort(name string, port int) {
	for i := range r.Cluster {
		if r.Cluster[i].Name == name {
			r.Cluster[i].Port = port
		}
	}
	if r.nodeSpecs()[0].name == name {
		r.NodePort = port
	}
}

// pmxcfsDir is the host folder a cluster rig's nodes share as /etc/pve.
func (r *Rig) pmxcfsDir() string { return filepath.Join(r.Dir, "pve") }

// clusterNodeCmd runs sshd again whenever it ends (a new host key, a test
// that dropped it), unless /etc/pvesim/ssh-off says the node is down.
var clusterNodeCmd = []string{"sh", "-c", "while :; do [ -e /etc/pvesim/ssh-off ] || /usr/sbin/sshd -D -e; sleep 0.5; done"}

// planCluster names the nodes and their addresses (the first at .2 like a
// standalone node, the others at .12, .13) and lays out the shared /etc/pve.
func (r *Rig) planCluster(n int) error {
	if n > 3 {
		return fmt.Errorf("a cluster rig has 2 or 3 nodes, not %d", n)
	}
	for i := 1; i <= n; i++ {
		ip := r.host(2)
		if i > 1 {
			ip = r.host(10 + i)
		}
		r.Cluster = append(r.Cluster, ClusterNode{Name: ClusterNodeName(i), IP: ip})
	}
	dir := r.pmxcfsDir()
	for _, c := range r.Cluster {
		if err := os.MkdirAll(filepath.Join(dir, "nodes", c.Name, "qemu-server"), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "firewall"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "storage.cfg"), []byte(r.clusterStorageConfig()), 0o640); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ".vmlist"), []byte(emptyVMList), 0o440); err != nil {
		return err
	}
	for name, target := range map[string]string{"local": "/etc/pvesim/local", "qemu-server": "/etc/pvesim/local/qemu-server", ".members": "/etc/pvesim/members"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// clusterStorageConfig is storageConfig with the shared storage.
func (r *Rig) clusterStorageConfig() string {
	return storageConfig + fmt.Sprintf("\nnfs: %s\n\texport /export/pve-shared\n\tpath /mnt/pve/%[1]s\n\tserver %s\n\tcontent images,rootdir\n", SharedStorage, r.Cluster[0].IP)
}

// members is the node's /etc/pve/.members as pmxcfs prints it (status.c).
func (r *Rig) members(nodename string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\"nodename\": \"%s\",\n\"version\": %d,\n", nodename, len(r.Cluster)+2)
	fmt.Fprintf(&b, "\"cluster\": { \"name\": \"%s\", \"version\": %d, \"nodes\": %d, \"quorate\": 1 },\n\"nodelist\": {\n", ClusterName, len(r.Cluster), len(r.Cluster))
	for i, c := range r.Cluster {
		sep := ","
		if i == len(r.Cluster)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "  \"%s\": { \"id\": %d, \"online\": 1, \"ip\": \"%s\"}%s\n", c.Name, i+1, c.IP, sep)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// joinCluster makes node n a member: its .members, its local link, and
// host keys of its own (the image's are the same in every container);
// sshd is restarted with them.
func (r *Rig) joinCluster(ctx context.Context, n nodeSpec) error {
	if err := r.putOn(ctx, n.container, "/etc/pvesim/members", []byte(r.members(n.name)), 0o440); err != nil {
		return fmt.Errorf("node %s: write .members: %w", n.name, err)
	}
	script := "ln -sfn /etc/pve/nodes/" + n.name + " /etc/pvesim/local && rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && { pkill -x sshd; true; }"
	res, err := dockerExec(ctx, r.pool, n.container, nil, "sh", "-c", script)
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("node %s: join the cluster: %w", n.name, err)
	}
	return nil
}

// NodeExecOn runs argv in node name's container (docker exec).
func (r *Rig) NodeExecOn(ctx context.Context, name string, argv ...string) (ExecResult, error) {
	n, err := r.node(name)
	if err != nil {
		return ExecResult{}, err
	}
	return dockerExec(ctx, r.pool, n.container, nil, argv...)
}

// NodeAddrOf is node name's sshd as host:port on 127.0.0.1.
func (r *Rig) NodeAddrOf(name string) (string, error) {
	n, err := r.node(name)
	return n.addr(), err
}

// SetNodeSSH turns a cluster node's sshd off (every connection to it
// dropped, none accepted) or on again (waiting until it answers). The node
// and its VMs go on running: a node phoenix cannot reach.
func (r *Rig) SetNodeSSH(ctx context.Context, name string, on bool) error {
	n, err := r.node(name)
	if err != nil {
		return err
	}
	if len(r.Cluster) == 0 {
		return fmt.Errorf("rig %s: SetNodeSSH needs a cluster rig", r.ID)
	}
	script := "touch /etc/pvesim/ssh-off && { pkill -x sshd; true; }"
	if on {
		script = "rm -f /etc/pvesim/ssh-off"
	}
	res, err := dockerExec(ctx, r.pool, n.container, nil, "sh", "-c", script)
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("node %s: sshd %v: %w", name, on, err)
	}
	if on {
		return r.waitSSH(n.addr())
	}
	return nil
}
