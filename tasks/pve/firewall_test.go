package pve

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

const (
	fw8101     = "/etc/pve/firewall/8101.fw"
	clusterOn  = "[OPTIONS]\nenable: 1\n"
	clusterOff = "[OPTIONS]\n\n# enable: 1 one day\npolicy_in: DROP\n"
	// The rig's lab rules for 8101, as phoenix writes them.
	labFW = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -source 10.210.0.0/24 -p tcp -dport 22 # ssh from the rig network\nIN ACCEPT -p icmp # ping\n"
)

var labRules = map[string]any{"enabled": true, "rules": []any{
	map[string]any{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "source": "10.210.0.0/24", "comment": "ssh from the rig network"},
	map[string]any{"type": "in", "action": "ACCEPT", "proto": "icmp", "comment": "ping"},
}}

// fwRead is the one round trip that reads the VM's file (nil: none) and
// cluster.fw.
func fwRead(file *string, cluster string) fake.Call {
	exists, content := fake.Fail(1, ""), fake.Out("")
	if file != nil {
		exists, content = fake.Out(""), fake.Out(*file)
	}
	return fake.Batch([]string{"test -e " + fw8101, catIfExists(fw8101), catIfExists(clusterFW)}, exists, content, fake.Out(cluster))
}

func ptrTo(s string) *string { return &s }

const net0FW = "qm set 8101 --net0 'virtio=BC:24:11:12:34:56,bridge=vmbr0,firewall=1'"

// Create, converge, change and disable the firewall of 8101, with the exact
// lines and file.
func TestFirewall(t *testing.T) {
	ctx := context.Background()
	withFW := with(resized, "net0", "virtio=BC:24:11:12:34:56,bridge=vmbr0,firewall=1")

	t.Run("create", func(t *testing.T) {
		node := fake.New(t, stateRead(8101, resized, "running", noSnapshots), fwRead(nil, clusterOn))
		env := newEnv(node, false)
		task := newTask(t, "vm_firewall", labRules)
		c := checked(t, task, env)
		wantCmds := []string{"mkdir -p /etc/pve/firewall", "write " + fw8101 + " (mode 0640)", net0FW}
		if !slices.Equal(c.Commands, wantCmds) || c.Summary != "will write "+fw8101+" (enabled, 2 rules); set firewall=1 on net0" ||
			c.Done != "wrote "+fw8101+" (enabled, 2 rules); set firewall=1 on net0" {
			t.Fatalf("plan %q / %q\ncommands %q", c.Summary, c.Done, c.Commands)
		}
		wantDiff := "--- /dev/null\n+++ " + fw8101 + "\n@@ -0,0 +1,6 @@\n+[OPTIONS]\n+enable: 1\n+\n+[RULES]\n" +
			"+IN ACCEPT -source 10.210.0.0/24 -p tcp -dport 22 # ssh from the rig network\n+IN ACCEPT -p icmp # ping\n" +
			"- net0: virtio=BC:24:11:12:34:56,bridge=vmbr0\n+ net0: virtio=BC:24:11:12:34:56,bridge=vmbr0,firewall=1\n"
		if c.Diff != wantDiff {
			t.Errorf("diff:\n%s\nwant:\n%s", c.Diff, wantDiff)
		}
		node.Expect(fake.Call{Line: "mkdir -p /etc/pve/firewall"}, fake.Call{Line: net0FW})
		if err := task.Apply(ctx, env, c); err != nil {
			t.Fatal(err)
		}
		if got := string(node.Files[fw8101]); got != labFW || node.Attrs[fw8101].Mode != 0o640 {
			t.Errorf("wrote (mode %o):\n%s\nwant:\n%s", node.Attrs[fw8101].Mode, got, labFW)
		}
		env.Forget("pve:")
		node.Expect(stateRead(8101, withFW, "running", noSnapshots), fwRead(ptrTo(labFW), clusterOn))
		if c, err := task.Check(ctx, env); err != nil || c.Pending() || c.Summary != "firewall matches: enabled, 2 rules" {
			t.Errorf("re-check = %s %q, %v", c.Action, c.Summary, err)
		}
	})

	t.Run("converged, written another way", func(t *testing.T) {
		handWritten := "# by hand\n[options]\nENABLE: 1\n\n[RULES]\n# ssh first\nIN ACCEPT -p tcp --dport 22 -source 10.210.0.0/24   #  ssh from the rig network\nin ACCEPT -proto icmp # ping\n"
		node := fake.New(t, stateRead(8101, withFW, "running", noSnapshots), fwRead(ptrTo(handWritten), clusterOn))
		if c, err := newTask(t, "vm_firewall", labRules).Check(ctx, newEnv(node, false)); err != nil || c.Pending() {
			t.Errorf("check = %s %q, %v; want none", c.Action, c.Summary, err)
		}
	})

	t.Run("a rule changed, one added, order kept, the rest of the file kept", func(t *testing.T) {
		cur := "[OPTIONS]\npolicy_in: DROP\nenable: 1\nlog_level_in: info\n\n[RULES]\nIN ACCEPT -source 10.210.0.0/24 -p tcp -dport 2222 # ssh from the rig network\nIN ACCEPT -p icmp # ping\n\n[IPSET trusted]\n10.0.0.5 # bastion\n\n[ALIASES]\nnas 10.0.0.13\n"
		params := map[string]any{"enabled": true, "rules": append(slices.Clone(labRules["rules"].([]any)),
			map[string]any{"type": "out", "action": "REJECT", "proto": "udp", "dport": "53", "dest": "+trusted"})}
		node := fake.New(t, stateRead(8101, withFW, "running", noSnapshots), fwRead(ptrTo(cur), clusterOn))
		env := newEnv(node, false)
		task := newTask(t, "vm_firewall", params)
		c := checked(t, task, env)
		wantDiff := "--- " + fw8101 + "\n+++ " + fw8101 + "\n@@ -4,8 +4,9 @@\n log_level_in: info\n \n [RULES]\n" +
			"-IN ACCEPT -source 10.210.0.0/24 -p tcp -dport 2222 # ssh from the rig network\n" +
			"+IN ACCEPT -source 10.210.0.0/24 -p tcp -dport 22 # ssh from the rig network\n" +
			" IN ACCEPT -p icmp # ping\n+OUT REJECT -dest +trusted -p udp -dport 53\n \n [IPSET trusted]\n 10.0.0.5 # bastion\n"
		if c.Diff != wantDiff || !slices.Equal(c.Commands, []string{"write " + fw8101 + " (mode 0640)"}) {
			t.Fatalf("diff:\n%s\nwant:\n%s\ncommands %q", c.Diff, wantDiff, c.Commands)
		}
		if err := task.Apply(ctx, env, c); err != nil {
			t.Fatal(err)
		}
		want := "[OPTIONS]\npolicy_in: DROP\nenable: 1\nlog_level_in: info\n\n[RULES]\n" +
			"IN ACCEPT -source 10.210.0.0/24 -p tcp -dport 22 # ssh from the rig network\nIN ACCEPT -p icmp # ping\nOUT REJECT -dest +trusted -p udp -dport 53\n" +
			"\n[IPSET trusted]\n10.0.0.5 # bastion\n\n[ALIASES]\nnas 10.0.0.13\n"
		if got := string(node.Files[fw8101]); got != want {
			t.Errorf("wrote:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("disable", func(t *testing.T) {
		node := fake.New(t, stateRead(8101, withFW, "running", noSnapshots), fwRead(ptrTo(labFW), clusterOn))
		env := newEnv(node, false)
		task := newTask(t, "vm_firewall", map[string]any{"enabled": false, "rules": labRules["rules"]})
		c := checked(t, task, env)
		if c.Summary != "will write "+fw8101+" (disabled, 2 rules)" || !strings.Contains(c.Diff, "-enable: 1\n+enable: 0\n") {
			t.Fatalf("plan %q\n%s", c.Summary, c.Diff)
		}
		if err := task.Apply(ctx, env, c); err != nil {
			t.Fatal(err)
		}
		if got := string(node.Files[fw8101]); got != strings.Replace(labFW, "enable: 1", "enable: 0", 1) {
			t.Errorf("wrote:\n%s", got)
		}
		// Off with no file at all: nothing to do.
		node.Expect(stateRead(8101, resized, "running", noSnapshots), fwRead(nil, clusterOn))
		if c, err := task.Check(ctx, newEnv(node, false)); err != nil || c.Pending() || c.Summary != "firewall off (no "+fw8101+")" {
			t.Errorf("no file = %s %q, %v", c.Action, c.Summary, err)
		}
	})

	t.Run("datacenter firewall off: said, never switched on", func(t *testing.T) {
		node := fake.New(t, stateRead(8101, withFW, "running", noSnapshots), fwRead(ptrTo(labFW), clusterOff))
		var logs []string
		env := newEnv(node, false)
		env.Log = func(format string, args ...any) { logs = append(logs, format) }
		task := newTask(t, "vm_firewall", labRules)
		c, err := task.Check(ctx, env)
		if err != nil || c.Pending() || !strings.Contains(c.Summary, "firewall matches: enabled, 2 rules; not enforced while the datacenter firewall is off") || len(logs) != 1 {
			t.Errorf("check = %s %q, %v; logs %q", c.Action, c.Summary, err, logs)
		}
		// Checked again (after an apply), it says so in the summary, and warns once.
		env.Forget("pve:")
		node.Expect(stateRead(8101, withFW, "running", noSnapshots), fwRead(ptrTo(labFW), clusterOff))
		if c, err := task.Check(ctx, env); err != nil || !strings.Contains(c.Summary, "not enforced") || len(logs) != 1 {
			t.Errorf("re-check = %q, %v; logs %q", c.Summary, err, logs)
		}
	})

	t.Run("vm missing", func(t *testing.T) {
		node := fake.New(t, missingRead(8101))
		c, err := newTask(t, "vm_firewall", labRules).Check(ctx, newEnv(node, true))
		if err != nil || c.Action != "unknown" || c.Summary != "vm 8101 does not exist yet; will write its firewall (enabled, 2 rules)" {
			t.Errorf("dry run = %s %q, %v", c.Action, c.Summary, err)
		}
	})
}

// A failed write leaves the rest (net0) undone and says where.
func TestFirewallWriteFails(t *testing.T) {
	node := fake.New(t, stateRead(8101, resized, "running", noSnapshots), fwRead(ptrTo(clusterOn), clusterOn))
	env := newEnv(node, false)
	env.Node = failingPut{node}
	task := newTask(t, "vm_firewall", labRules)
	c := checked(t, task, env)
	if err := task.Apply(context.Background(), env, c); err == nil || !strings.Contains(err.Error(), "write "+fw8101+" on the node") {
		t.Errorf("apply err = %v", err)
	}
}

type failingPut struct{ *fake.Transport }

func (failingPut) Put(context.Context, string, io.Reader, transport.Attrs) error {
	return transport.ErrDisconnected
}

// A value that would change the rule's line is refused (the inventory
// refuses it first, with its place in the config).
func TestFirewallRefusesLineBreakers(t *testing.T) {
	reg := map[string]any{"type": "in", "action": "ACCEPT"}
	for _, bad := range []map[string]any{
		merge(reg, map[string]any{"source": "10.0.0.1 -dport 22"}),
		merge(reg, map[string]any{"dest": "10.0.0.1#x"}),
		merge(reg, map[string]any{"comment": "a\nIN ACCEPT"}),
		merge(reg, map[string]any{"type": "forward"}),
		merge(reg, map[string]any{"action": ""}),
	} {
		params := map[string]any{"enabled": true, "rules": []any{bad}}
		reg := tasks.Registry{}
		register(reg, qm{})
		if _, err := reg["vm_firewall"](params); err == nil {
			t.Errorf("rule %v accepted", bad)
		}
	}
}

func TestParseRule(t *testing.T) {
	for line, want := range map[string]string{
		"IN ACCEPT -p tcp -dport 443 -source 10.0.0.0/24 -log nolog # web": "IN ACCEPT -source 10.0.0.0/24 -p tcp -dport 443 -log nolog # web",
		"|out DROP --dest 10.0.0.1 -i net0":                                "|OUT DROP -i net0 -dest 10.0.0.1",
		"IN SSH(ACCEPT) -i net0":                                           "IN SSH(ACCEPT) -i net0",
		"GROUP webservers":                                                 "GROUP webservers",
		"IN ACCEPT -p":                                                     "IN ACCEPT -p",
		"IN ACCEPT -bogus 1":                                               "IN ACCEPT -bogus 1",
	} {
		if got := parseRule(line).String(); got != want {
			t.Errorf("parseRule(%q) = %q, want %q", line, got, want)
		}
	}
}
