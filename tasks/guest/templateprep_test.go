package guest

import (
	"context"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// Before qm template the guest loses its cloud-init state, machine-id and
// SSH host keys; a clean guest is left alone, a stopped one cannot answer.
func TestTemplatePrep(t *testing.T) {
	w := newWorld(t)
	task := w.task("guest_template_prep", map[string]any{})
	w.probes(task, exit(0, "/var/lib/cloud/instance\n/var/lib/cloud/instances\n/var/log/cloud-init.log\n"+
		"/etc/ssh/ssh_host_ecdsa_key\n/etc/ssh/ssh_host_ecdsa_key.pub\n/etc/ssh/ssh_host_ed25519_key\n/etc/ssh/ssh_host_ed25519_key.pub\n/etc/machine-id\n", ""))
	c := w.check(task)
	want := "cloud-init's instance state and logs, the machine-id, 4 SSH host key files"
	if c.Action != tasks.Delete || c.Summary != "will clean the guest for templating: "+want || c.Done != "cleaned the guest for templating: "+want ||
		!strings.HasPrefix(c.Diff, "- /var/lib/cloud/instance\n") || len(c.Commands) != 1 || c.Commands[0] != prepLine {
		t.Fatalf("check = %s %q / %q\ndiff %s\ncommands %q", c.Action, c.Summary, c.Done, c.Diff, c.Commands)
	}
	for _, part := range []string{"cloud-init clean --logs", "rm -f /var/log/cloud-init.log /var/log/cloud-init-output.log /etc/ssh/ssh_host_*", ": > /etc/machine-id"} {
		if !strings.Contains(prepScript, part) {
			t.Errorf("the clean script lacks %q", part)
		}
	}
	w.guest.Expect(fake.Call{Line: prepLine})
	if err := w.apply(task, c); err != nil {
		t.Fatal(err)
	}
	// The runner checks again: nothing is left.
	w.guest.Expect(fake.Call{Line: prepProbe})
	if c := w.check(task); c.Pending() || c.Summary != "the guest holds no cloud-init instance state, machine-id or SSH host keys" {
		t.Errorf("re-check = %s %q", c.Action, c.Summary)
	}

	w.status = "stopped"
	if c := w.check(task); c.Action != tasks.Unknown || !strings.HasPrefix(c.Summary, "will clean the guest for templating") {
		t.Errorf("stopped: %s %q", c.Action, c.Summary)
	}
}

func TestTemplatePrepFails(t *testing.T) {
	w := newWorld(t)
	task := w.task("guest_template_prep", map[string]any{})
	w.probes(task, exit(0, "/etc/machine-id\n", ""))
	c := w.check(task)
	w.guest.Expect(fake.Call{Line: prepLine, Result: exit(1, "", "rm: cannot remove '/etc/ssh/ssh_host_rsa_key': Read-only file system\n")})
	if err := w.apply(task, c); err == nil || !strings.Contains(err.Error(), "clean the guest: ") || !strings.Contains(err.Error(), "Read-only file system") {
		t.Errorf("apply err = %v", err)
	}
}

// Probes batched while cloud-init still ran are forgotten once it is done:
// it made the host keys since, and the cleaning before qm template must see
// them (a stale "nothing left" would leave them in every clone).
func TestProbesFreshAfterCloudInitWait(t *testing.T) {
	w := newWorld(t)
	ci := w.task("cloud_init", map[string]any{"timeout_seconds": 60})
	prep := w.task("guest_template_prep", map[string]any{})
	lines := append(ci.(tasks.GuestProber).GuestProbes(w.env), prep.(tasks.GuestProber).GuestProbes(w.env)...)
	w.guest.Expect(fake.BatchParallel(lines, exit(0, ciRunning, ""), exit(0, "", "")))
	res, err := transport.BatchParallel(context.Background(), w.guest, lines)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		w.env.Store("guest-probe:"+l, res[i])
	}
	w.guest.Expect(fake.Call{Line: ciStatusLine, Result: exit(0, ciDone224, "")})
	if c := w.check(ci); c.Pending() {
		t.Fatalf("cloud-init = %s %q", c.Action, c.Summary)
	}
	w.guest.Expect(fake.Call{Line: prepProbe, Result: exit(0, "/etc/ssh/ssh_host_ed25519_key\n/etc/ssh/ssh_host_ed25519_key.pub\n", "")})
	if c := w.check(prep); c.Action != tasks.Delete || !strings.HasSuffix(c.Summary, "2 SSH host key files") {
		t.Errorf("prep = %s %q; want the keys cloud-init made", c.Action, c.Summary)
	}
}
