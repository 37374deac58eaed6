package pvesim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cluster is two simulated nodes, pve1 and pve2, as the rig makes them:
// one /etc/pve (here a folder both roots link to) and one Docker engine.
type cluster struct {
	t     *testing.T
	nodes map[string]*harness
	log   strings.Builder
}

const clusterStorageCfg = testStorageCfg + `
nfs: nfs-shared
	export /export/pve-shared
	path /mnt/pve/nfs-shared
	server 10.0.0.11
	content images,rootdir
`

const clusterMembers = `{
"nodename": "pve1",
"version": 4,
"cluster": { "name": "lab", "version": 2, "nodes": 2, "quorate": 1 },
"nodelist": {
  "pve1": { "id": 1, "online": 1, "ip": "10.0.0.11"},
  "pve2": { "id": 2, "online": 1, "ip": "10.0.0.12"}
  }
}
`

func newCluster(t *testing.T) *cluster {
	t.Helper()
	shared := t.TempDir()
	c := &cluster{t: t, nodes: map[string]*harness{}}
	var first *harness
	for _, name := range []string{"pve1", "pve2"} {
		h := newHarness(t)
		if err := os.RemoveAll(h.sim.path("etc/pve")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(shared, h.sim.path("etc/pve")); err != nil {
			t.Fatal(err)
		}
		h.sim.Node = name
		if first != nil {
			h.backend = first.backend // one Docker engine
			h.sim.Backend, h.sim.Disks = first.backend, first.backend
			h.sim.Procs = &fakeProcs{b: first.backend, root: h.sim.Root}
		}
		if err := h.sim.layout(); err != nil {
			t.Fatal(err)
		}
		c.nodes[name] = h
		if first == nil {
			first = h
		}
	}
	first.write("etc/pve/storage.cfg", clusterStorageCfg)
	first.write("etc/pve/.members", clusterMembers)
	return c
}

// step runs a command on node and adds it to the transcript.
func (c *cluster) step(node string, args ...string) result {
	c.t.Helper()
	h := c.nodes[node]
	r := h.step("", args...)
	c.log.WriteString(node + " " + h.log.String())
	h.log.Reset()
	return r
}

// owners adds where each VM's config is, and .vmlist, to the transcript.
func (c *cluster) owners() {
	c.t.Helper()
	h := c.nodes["pve1"]
	matches, _ := filepath.Glob(h.sim.path("etc/pve/nodes/*/qemu-server/*.conf"))
	var lines []string
	for _, m := range matches {
		rel, _ := filepath.Rel(h.sim.path("etc/pve"), m)
		lines = append(lines, rel)
	}
	fmt.Fprintf(&c.log, "=== configs\n%s\n=== etc/pve/.vmlist\n%s\n", strings.Join(lines, "\n"), h.read("etc/pve/.vmlist"))
}

// A template on pve1, cloned to pve2 with --target when its volumes are on
// shared storage, refused when they are local; a VM of pve2 is not pve1's
// to work on; VMIDs are the cluster's; offline migration both ways, and its
// refusals.
func TestCluster(t *testing.T) {
	c := newCluster(t)
	h1 := c.nodes["pve1"]
	shared := strings.NewReplacer("local-lvm:base-9000-disk-0", "nfs-shared:9000/base-9000-disk-0.raw",
		"local-lvm:vm-9000-cloudinit", "nfs-shared:9000/vm-9000-cloudinit.qcow2").Replace(conf9000)
	h1.write("etc/pve/nodes/pve1/qemu-server/9000.conf", shared)
	h1.write("etc/pve/nodes/pve1/qemu-server/9001.conf", strings.ReplaceAll(conf9000, "9000", "9001"))
	h1.backend.disks[h1.sim.diskRef("nfs-shared:9000/base-9000-disk-0.raw")] = "cloud image"
	h1.backend.disks[h1.sim.diskRef("local-lvm:base-9001-disk-0")] = "cloud image"

	// Allowed: every volume on nfs-shared.
	c.step("pve1", "qm", "clone", "9000", "8102", "--name", "web02", "--full", "1", "--target", "pve2")
	c.owners()
	c.step("pve2", "qm", "config", "8102")
	c.step("pve1", "qm", "config", "8102")
	c.step("pve1", "qm", "status", "8102")
	c.step("pve1", "qm", "start", "8102")
	c.step("pve1", "qm", "stop", "8102")
	c.step("pve2", "qm", "list")
	// Refused: 9001's disks are on local-lvm; an unknown node; a local
	// --storage; --target naming the local node is no target.
	c.step("pve1", "qm", "clone", "9001", "8103", "--full", "1", "--target", "pve2")
	c.step("pve1", "qm", "clone", "9000", "8103", "--full", "1", "--target", "pve9")
	c.step("pve1", "qm", "clone", "9000", "8103", "--full", "1", "--storage", "local-lvm", "--target", "pve2")
	c.step("pve1", "qm", "clone", "9001", "8103", "--full", "1", "--target", "pve1")
	// One VMID in the whole cluster.
	c.step("pve1", "qm", "clone", "9000", "8102")
	c.step("pve1", "qm", "create", "8102")
	c.owners()

	// Offline migration: 8103 (local disks) to pve2 and back.
	c.step("pve1", "qm", "migrate", "8103", "pve2")
	c.owners()
	c.step("pve2", "qm", "start", "8103")
	c.step("pve2", "qm", "migrate", "8103", "pve1")
	c.step("pve2", "qm", "migrate", "8103", "pve1", "--online")
	c.step("pve2", "qm", "stop", "8103")
	c.step("pve2", "qm", "migrate", "8103", "pve2")
	c.step("pve2", "qm", "migrate", "8103", "pve9")
	c.step("pve2", "qm", "migrate", "8103", "pve1", "--online")
	c.step("pve1", "qm", "migrate", "8103", "pve2")
	// A linked clone of a template on local storage stays where it is.
	c.step("pve1", "qm", "clone", "9001", "8104", "--name", "linked")
	c.step("pve1", "qm", "migrate", "8104", "pve2")
	c.owners()
	checkGolden(t, "cluster", c.log.String())
}
