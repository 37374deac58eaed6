package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completions asks phoenix for completions as a shell does: COMP_LINE set,
// phoenix prints one candidate per line and exits 0.
func completions(t *testing.T, line string) []string {
	t.Helper()
	t.Setenv("COMP_LINE", line)
	code, out, errs := run()
	if code != 0 || errs != "" {
		t.Fatalf("COMP_LINE=%q: exit %d, stderr %q", line, code, errs)
	}
	got := strings.Fields(out)
	slices.Sort(got)
	return got
}

func TestCompletion(t *testing.T) {
	flags := files(t, testConfig)
	config := flags[1]
	dir := t.TempDir()
	for _, f := range []string{"web.yml", "db.yaml", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"phoenix cr", []string{"create"}},
		{"phoenix st", []string{"start", "status", "stop"}},
		{"phoenix plan --d", []string{"--detailed-exitcode", "--diff"}},
		{"phoenix --output ", []string{"json", "text"}},
		{"phoenix create --config " + config + " ", []string{"8101", "9000"}},
		{"phoenix create --config=" + config + " 8101 ", []string{"8101", "9000"}}, // every VMID, not only the first
		{"phoenix --config " + config + " exec 8", []string{"8101"}},
		{"phoenix run --config " + config + " create --vmid ", []string{"8101", "9000"}},
		{"phoenix create --config /nonexistent/c.json ", nil},                                       // no config, no guesses
		{"phoenix run ", []string{"./", "create", "db.yaml", "delete", "start", "stop", "web.yml"}}, // "./": directories, to find playbooks in them
		{"phoenix completion ", []string{"bash", "fish", "zsh"}},
	} {
		if got := completions(t, tc.line); !slices.Equal(got, tc.want) {
			t.Errorf("COMP_LINE=%q: %q, want %q", tc.line, got, tc.want)
		}
	}
	t.Setenv("PHOENIX_CONFIG", config)
	if got := completions(t, "phoenix status "); !slices.Equal(got, []string{"8101", "9000"}) {
		t.Errorf("with PHOENIX_CONFIG: %q", got)
	}
}

// Each shell's script registers this binary for phoenix; bash accepts it.
func TestCompletionScripts(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errs := run("completion", shell)
		if code != 0 || !strings.Contains(out, bin) || !strings.Contains(out, "phoenix") {
			t.Errorf("completion %s: exit %d, %q, %s", shell, code, out, errs)
		}
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed to check the bash script")
	}
	_, script, _ := run("completion", "bash")
	check := exec.Command("bash", "-c", script+"\ncomplete -p phoenix")
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "-C") {
		t.Errorf("bash did not register the completion: %v\n%s", err, out)
	}
	if code, _, _ := run("completion", "tcsh"); code == 0 {
		t.Error("completion for an unknown shell succeeded")
	}
}
