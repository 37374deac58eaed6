package runner

import (
	"bytes"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
)

// textEvents is a small run of two VMs: 8101 applies and converges, 8102
// fails at a step, 8103 fails because its dependency did.
func textEvents(dryRun bool) []Event {
	diff := "" // the runner leaves diffs out without --diff
	if dryRun {
		diff = "-cores: 1\n+cores: 2\n"
	}
	ms := time.Millisecond
	events := []Event{
		{Type: EventRunStart, Playbook: "create", VMIDs: []int{8101, 8102, 8103}, Forks: 5, DryRun: dryRun},
		{Type: EventVMStart, VMID: 8101, VMName: "web01"},
		{Type: EventTaskStart, VMID: 8101, Task: "clone from template", Kind: "vm_clone"},
		{Type: EventTaskEnd, VMID: 8101, Task: "clone from template", Kind: "vm_clone", Status: StatusSkipped,
			Change: tasks.Change{Summary: "no clone_from_vmid configured"}, DryRun: dryRun},
		{Type: EventTaskEnd, VMID: 8101, Task: "core config", Kind: "vm_config", Status: StatusChanged, Transport: "node", Duration: 120 * ms,
			Change: tasks.Change{Action: tasks.Update, Summary: "set cores", Diff: diff, Commands: []string{"qm set 8101 --cores 2"}}, DryRun: dryRun},
		{Type: EventLog, VMID: 8101, Task: "wait for guest", Text: "vm 8101: waiting for the guest agent"}, // the prefix goes: the line says the VM
		{Type: EventTaskEnd, VMID: 8101, Task: "cloud-init", Kind: "cloud_init", Status: StatusOK, Transport: "agent", Duration: 2300 * ms,
			Change: tasks.Change{Action: tasks.None, Summary: "cloud-init done", Details: "status: done\n"}, DryRun: dryRun},
		{Type: EventOutput, VMID: 8101, Task: "feature docker", Stream: "stdout", Text: "docker: installing docker.io"},
		{Type: EventVMEnd, VMID: 8101, Status: StatusOK, Counts: Counts{OK: 1, Changed: 1, Skipped: 1}, Duration: 2500 * ms},
		{Type: EventTaskEnd, VMID: 8102, Task: "mount nfs /mnt/data", Kind: "nfs_mount", Status: StatusFailed, Transport: "ssh", Duration: 1000 * ms,
			Error: `run "mount /mnt/data": exit 32: access denied`, Change: tasks.Change{Details: "mount.nfs: access denied by server"}, DryRun: dryRun},
		{Type: EventVMEnd, VMID: 8102, Status: StatusFailed, Counts: Counts{Failed: 1}, Duration: 1000 * ms,
			Error: `vm 8102: step "mount nfs /mnt/data": run "mount /mnt/data": exit 32: access denied`},
		{Type: EventVMEnd, VMID: 8103, Status: StatusFailed, Counts: Counts{Failed: 1}, Error: "dependency 8102 failed"},
		{Type: EventSummary, Counts: Counts{OK: 1, Changed: 1, Failed: 2, Skipped: 1}, Duration: 3500 * ms, DryRun: dryRun},
	}
	if dryRun { // a step that depends on an earlier pending change
		pending := Event{Type: EventTaskEnd, VMID: 8101, Task: "wait for guest", Kind: "guest_wait", Status: StatusChanged, Transport: "node",
			Change: tasks.Change{Action: tasks.Unknown, Summary: "will wait up to 5m0s for the guest"}, DryRun: true}
		events = append(events[:5], append([]Event{pending}, events[5:]...)...)
	}
	return events
}

func TestTextOutput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		obs    Text
		dryRun bool
		want   string
	}{
		{"default", Text{}, false, `create on vm 8101, 8102, 8103
8101  clone from template          skipped         no clone_from_vmid configured
8101  core config                  changed        node    0.1s  set cores
8101  | waiting for the guest agent
8101  cloud-init                   ok             agent   2.3s  cloud-init done
8101: ok=1 changed=1 failed=0 skipped=1 (2.5s)
8102  mount nfs /mnt/data          failed         ssh     1.0s  run "mount /mnt/data": exit 32: access denied
      mount.nfs: access denied by server
8102: ok=0 changed=0 failed=1 skipped=0 (1.0s)
8103: ok=0 changed=0 failed=1 skipped=0: dependency 8102 failed
total: ok=1 changed=1 failed=2 skipped=1 in 3.5s
`},
		{"dry run with -v", Text{Verbose: 1}, true, `create on vm 8101, 8102, 8103 (dry run: nothing is changed)
8101  clone from template …
8101  clone from template          skipped         no clone_from_vmid configured
8101  core config                  would update   node    0.1s  set cores
      -cores: 1
      +cores: 2
      $ qm set 8101 --cores 2
8101  wait for guest               pending        node    0.0s  will wait up to 5m0s for the guest
8101  | waiting for the guest agent
8101  cloud-init                   ok             agent   2.3s  cloud-init done
      status: done
8101  > docker: installing docker.io
8101: ok=1 changed=1 failed=0 skipped=1 (2.5s)
8102  mount nfs /mnt/data          failed         ssh     1.0s  run "mount /mnt/data": exit 32: access denied
      mount.nfs: access denied by server
8102: ok=0 changed=0 failed=1 skipped=0 (1.0s)
8103: ok=0 changed=0 failed=1 skipped=0: dependency 8102 failed
total: ok=1 changed=1 failed=2 skipped=1 in 3.5s; dry run: 1 to change, nothing was changed
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			obs := tc.obs
			obs.W = &buf
			for _, e := range textEvents(tc.dryRun) {
				obs.OnEvent(e)
			}
			if got := buf.String(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
