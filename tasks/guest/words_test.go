package guest

import (
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// tense fails the test unless c, a pending change, says what it will do in
// the future tense and what it did in the past.
func tense(t *testing.T, kind string, c tasks.Change) {
	t.Helper()
	if !c.Pending() {
		t.Fatalf("%s: %s %q, want a pending change", kind, c.Action, c.Summary)
	}
	if !strings.Contains(c.Summary, "will ") || c.Done == "" || strings.Contains(c.Done, "will ") {
		t.Errorf("%s: plan %q, done %q: want the plan in the future tense, done in the past", kind, c.Summary, c.Done)
	}
}

// A VM that is not running yet cannot answer: each guest task says what it
// will do once it does, and what it did, once.
func TestGuestTasksWordBothTenses(t *testing.T) {
	w := newWorld(t)
	w.status = "stopped"
	w.features["docker"] = "#!/bin/sh\n"
	for kind, params := range map[string]map[string]any{
		"guest_wait": {},
		"cloud_init": {},
		"nfs_mount":  {"export": "/export/8101", "path": "/mnt/data"},
		"feature":    {"name": "docker"},
	} {
		tense(t, kind, w.check(w.task(kind, params)))
	}
	w.status = "running"
	hk := w.task("guest_hostkey", map[string]any{"state": "present"})
	w.node.Expect(fake.Call{Line: readSnip})
	c := w.check(hk)
	tense(t, "guest_hostkey", c)
	if c.Done != "generated an ed25519 host key in "+snippet+" and pinned it as "+alias {
		t.Errorf("done %q", c.Done)
	}
}
