package playbooks

import (
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
)

// `&&` joins terms: the step runs when each holds, and the reason names the
// first that does not.
func TestWhenAnd(t *testing.T) {
	const when = `${vm.final_snapshot} && !${vm.is_template}`
	for _, tc := range []struct {
		vm     *inventory.VM
		reason string // "" runs
	}{
		{&inventory.VM{VMID: 8101, Name: "a", FinalSnapshot: "final-form"}, ""},
		{&inventory.VM{VMID: 9000, Name: "t", FinalSnapshot: "final-form", IsTemplate: true}, "is_template is true"},
		{&inventory.VM{VMID: 9000, Name: "t", IsTemplate: true}, "final_snapshot is empty"},
	} {
		steps, err := renderOne(t, "tasks:\n  - {name: s, kind: k, when: \""+when+"\"}\n", tc.vm)
		if err != nil {
			t.Fatal(err)
		}
		if steps[0].Skipped != (tc.reason != "") || steps[0].SkipReason != tc.reason {
			t.Errorf("vm %d: skipped=%v reason %q, want reason %q", tc.vm.VMID, steps[0].Skipped, steps[0].SkipReason, tc.reason)
		}
	}
	_, err := renderOne(t, "tasks:\n  - {name: s, kind: k, when: \"${vm.vmid} && \"}\n", vm8101())
	if err == nil || !strings.Contains(err.Error(), "a condition term is empty") {
		t.Errorf("empty term: err = %v", err)
	}
}
