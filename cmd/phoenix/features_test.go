package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A feature that cannot run (no script built in or in --feature-dir,
// trusted_ca without trusted_ca_files) fails validate, plan and status
// --check before anything connects, each named where the config names it.
func TestFeatureProblems(t *testing.T) {
	const features = `"features": ["docker"]`
	doc := strings.Replace(testConfig, features, `"features": ["docker", "hello", "trusted_ca"]`, 1)
	args := files(t, doc)
	cfg := args[1]
	helloAt := fmt.Sprintf("%s:%s: /vms/1/features/1: ", cfg, featureAt(t, doc, `"hello"`))
	caAt := fmt.Sprintf("%s:%s: /vms/1/features/2: ", cfg, featureAt(t, doc, `"trusted_ca"`))
	missing := helloAt + "no hello.sh in the built-in features (--feature-dir DIR adds a directory of NAME.sh scripts)"
	noFiles := caAt + "feature trusted_ca needs trusted_ca_files: "

	for _, verb := range [][]string{{"validate"}, {"plan", "8101"}, {"create", "--all", "--dry-run"}, {"status", "--check"}} {
		code, out, errs := run(append(args, verb...)...)
		if code != 1 || !strings.Contains(errs, "phoenix: "+missing+"\n") || !strings.Contains(errs, "\n"+noFiles) {
			t.Errorf("%s: exit %d, want 1 and\n%s\n%s…\nstdout: %s\nstderr: %s", verb, code, missing, noFiles, out, errs)
		}
	}

	// With the script in --feature-dir and the files configured: valid.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.sh"), []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	doc = strings.Replace(doc, `"vm_defaults": {`, `"vm_defaults": {"trusted_ca_files": ["/etc/pve/phoenix/root_ca.crt"], `, 1)
	code, out, errs := run(append(files(t, doc), "validate", "--feature-dir", dir)...)
	if code != 0 || !strings.Contains(out, ": valid (2 VMs") {
		t.Errorf("validate with the script and the files: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	// A VM without features, or a playbook without a feature step, is not
	// held up by another's: delete 9000 gets past the check (and fails at
	// the node, which the test inventory does not have).
	code, _, errs = run(append(args, "delete", "9000", "--dry-run")...)
	if code != 1 || strings.Contains(errs, "features/") {
		t.Errorf("delete 9000: exit %d, want 1 from the node, not the features: %s", code, errs)
	}
	code, _, errs = run(append(args, "plan", "9000")...)
	if code != 1 || strings.Contains(errs, "features/") {
		t.Errorf("plan 9000: exit %d, want 1 from the node, not 8101's features: %s", code, errs)
	}
}

// featureAt is line:col of the array item marker in doc.
func featureAt(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("%q not in the config", marker)
	}
	return fmt.Sprintf("%d:%d", strings.Count(doc[:i], "\n")+1, i-strings.LastIndex(doc[:i], "\n"))
}
