package pvesim

import (
	"encoding/json"
	"os"
	"testing"
)

// Lines of netbase's /etc/protocols and /etc/services, as on a node.
const (
	etcProtocols = "# protocols\nip\t0\tIP\nicmp\t1\tICMP\ntcp\t6\tTCP\nudp\t17\tUDP\nipv6-icmp\t58\tIPv6-ICMP\nsctp\t132\tSCTP\n"
	etcServices  = "# services\nssh\t\t22/tcp\nhttp\t\t80/tcp\t\twww\nhttps\t\t443/tcp\ndomain\t\t53/udp\n"
)

func TestFirewall(t *testing.T) {
	h := newHarness(t).withVMs()
	h.write("etc/protocols", etcProtocols)
	h.write("etc/services", etcServices)
	const fw = "/nodes/pve/qemu/8101/firewall"
	pvesh := func(args ...string) result { return h.step("", append([]string{"pvesh"}, args...)...) }
	json1 := []string{"--output-format", "json"}

	pvesh(append([]string{"get", "/cluster/firewall/options"}, json1...)...)
	pvesh(append([]string{"get", fw + "/options"}, json1...)...)
	pvesh(append([]string{"get", fw + "/rules"}, json1...)...)
	pvesh("set", fw+"/options", "--enable", "1", "--policy_in", "DROP")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--proto", "icmp", "--enable", "1", "--comment", "ping")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--proto", "tcp", "--dport", "22", "--source", "10.0.10.0/24",
		"--enable", "1", "--comment", "ssh from the LAN")
	pvesh("create", fw+"/rules", "--type", "out", "--action", "DROP", "--dest", "192.0.2.0/24", "--pos", "5")
	h.file("etc/pve/firewall/8101.fw")
	r := pvesh(append([]string{"get", fw + "/rules"}, json1...)...)
	var rules []struct{ Digest string }
	if err := json.Unmarshal([]byte(r.stdout), &rules); err != nil || len(rules) != 3 {
		t.Fatalf("rules: %q, %v", r.stdout, err)
	}
	pvesh(append([]string{"get", fw + "/options"}, json1...)...)
	pvesh(append([]string{"get", fw + "/rules/2"}, json1...)...)
	pvesh("get", fw+"/rules/3")
	// Order: a rule moves before the one at the target position.
	pvesh("set", fw+"/rules/2", "--moveto", "0", "--digest", rules[0].Digest)
	pvesh("set", fw+"/rules/0", "--comment", "stale digest", "--digest", rules[0].Digest)
	pvesh("set", fw+"/rules/1", "--comment", "", "--enable", "1", "--delete", "source")
	pvesh("set", fw+"/rules/1", "--delete", "type")
	pvesh("set", fw+"/rules/1", "--delete", "nosuch")
	h.file("etc/pve/firewall/8101.fw")
	pvesh("delete", fw+"/rules/0")
	pvesh("delete", fw+"/rules/7")
	pvesh("delete", fw+"/rules/0", "--digest", "0000000000000000000000000000000000000000")
	// What the API refuses, with PVE's words.
	pvesh("create", fw+"/rules", "--action", "ACCEPT")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--proto", "TCP", "--dport", "99999")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--dport", "22")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "accept")
	pvesh("create", fw+"/rules", "--type", "forward", "--action", "ACCEPT")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--proto", "icmp", "--sport", "22")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--source", "10.0.0.1,fe80::1")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--macro", "nope")
	pvesh("create", fw+"/rules", "--type", "in", "--action", "ACCEPT", "--macro", "ssh", "--iface", "eth0")
	pvesh("set", fw+"/options", "--delete", "nosuch")
	pvesh("set", fw+"/options", "--delete", "policy_in", "--enable", "0")
	pvesh(append([]string{"get", fw + "/options"}, json1...)...)

	// A file written by hand: read as pve-firewall reads it, written back
	// in its canonical order.
	h.write("etc/pve/firewall/8102.fw", "[OPTIONS]\nenable: 1\nPOLICY_IN: accept\nbogus: 1\n\n[IPSET ipfilter-net0]\n10.0.10.5\n\n"+
		"[RULES]\nIN ACCEPT -p tcp -dport 443 -source 10.0.0.0/24 -log nolog # web\n|IN ssh(ACCEPT) -i net0\nIN ACCEPT -p TCP\nOUT DROP -x y\n")
	pvesh(append([]string{"get", "/nodes/pve/qemu/8102/firewall/rules"}, json1...)...)
	pvesh(append([]string{"get", "/nodes/pve/qemu/8102/firewall/options"}, json1...)...)
	pvesh("set", "/nodes/pve/qemu/8102/firewall/rules/1", "--enable", "1")
	h.file("etc/pve/firewall/8102.fw")
	// Rules have no proxyto: any node name reaches this node's files.
	pvesh("get", "/nodes/other/qemu/8102/firewall/rules/0", "--output-format", "json")
	pvesh("get", "/nodes/other/qemu/8102/firewall/options")

	h.write("etc/pve/firewall/cluster.fw", "[OPTIONS]\n\nenable: 1\npolicy_in: DROP\n")
	pvesh(append([]string{"get", "/cluster/firewall/options"}, json1...)...)
	h.step("", "qm", "set", "8101", "--net0", "virtio=BC:24:11:12:34:56,bridge=vmbr0,firewall=1")
	h.step("", "qm", "config", "8101")
	// A clone gets its source's firewall; destroy removes a VM's.
	h.write("etc/pve/firewall/9000.fw", "[OPTIONS]\n\nenable: 1\n\n[RULES]\n\nIN SSH(ACCEPT) -i net0\n\n")
	h.step("", "qm", "clone", "9000", "8103", "--name", "web03")
	h.file("etc/pve/firewall/8103.fw")
	h.step("", "qm", "destroy", "8101")
	if _, err := os.Stat(h.sim.firewallFile("8101.fw")); !os.IsNotExist(err) {
		t.Errorf("8101.fw after qm destroy: %v", err)
	}
	h.golden("firewall")
}
