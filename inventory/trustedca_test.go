package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestTrustedCAFilesProblems(t *testing.T) {
	tests := []struct {
		name, doc, ptr, at, msg string
	}{
		{"relative", vmDoc(`, "trusted_ca_files": ["ca/root.crt"]`), "/vms/0/trusted_ca_files/0", `"ca/root.crt"`, "must be an absolute path on the Proxmox node"},
		{"not clean", vmDoc(`, "trusted_ca_files": ["/etc/pve/../ca.crt"]`), "/vms/0/trusted_ca_files/0", `"/etc/pve/../ca.crt"`, "must be a clean path"},
		{"same name twice", vmDoc(`, "trusted_ca_files": ["/a/root.crt", "/b/root.pem"]`), "/vms/0/trusted_ca_files/1", `"/b/root.pem"`,
			"becomes root.crt in the guest, as /vms/0/trusted_ca_files/0 does"},
		{"odd name", vmDoc(`, "trusted_ca_files": ["/a/my root.crt"]`), "/vms/0/trusted_ca_files/0", `"/a/my root.crt"`, `file name "my root.crt": want letters`},
		{"defaults", `{"vm_defaults": {"trusted_ca_files": ["root.crt"]}, "vms": [{"vmid": 8101, "name": "a"}]}`, "/vm_defaults/trusted_ca_files/0", `"root.crt"`, "absolute path"},
		{"not a list", vmDoc(`, "trusted_ca_files": "/a/root.crt"`), "/vms/0/trusted_ca_files", `"/a/root.crt"`, "array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantProblem(t, tt.doc, tt.ptr, tt.at, tt.msg) })
	}
}

// wantProblem fails the test unless loading doc reports a problem saying
// msg at ptr, placed at the line:col of marker at.
func wantProblem(t *testing.T, doc, ptr, at, msg string) {
	t.Helper()
	path := writeConfig(t, doc)
	_, err := LoadConfig(path)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConfigError", err)
	}
	want := fmt.Sprintf("%s:%s: %s: ", path, lineColOf(t, doc, at), ptr)
	for _, p := range ce.Problems {
		if p.Pointer == ptr && strings.Contains(p.Message, msg) && strings.Contains(err.Error(), want) {
			return
		}
	}
	t.Fatalf("no problem %q at %s (%s) in:\n%v", msg, ptr, want, err)
}

// vm_defaults' list is every VM's that has none; a VM's own list, even an
// empty one, replaces it. A list without the feature is a warning, once
// where it is written.
func TestTrustedCAFiles(t *testing.T) {
	doc := "{\"vm_defaults\": {\"trusted_ca_files\": [\"/etc/pve/phoenix/root_ca.crt\"]},\n\"vms\": [\n" +
		`{"vmid": 8101, "name": "a", "features": ["base_setup", "trusted_ca"]},` + "\n" +
		`{"vmid": 8102, "name": "b", "features": ["trusted_ca"], "trusted_ca_files": ["/root/ca/Corp-Root.pem", "/root/ca/issuing.cer"]},` + "\n" +
		`{"vmid": 8103, "name": "c", "features": ["trusted_ca"], "trusted_ca_files": []},` + "\n" +
		`{"vmid": 8104, "name": "d", "trusted_ca_files": ["/root/ca/x.crt"]}]}`
	path := writeConfig(t, doc)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	for vmid, want := range map[int][]string{
		8101: {"/etc/pve/phoenix/root_ca.crt"},
		8102: {"/root/ca/Corp-Root.pem", "/root/ca/issuing.cer"},
		8103: {},
		8104: {"/root/ca/x.crt"},
	} {
		if got := cfg.Lookup(vmid).TrustedCAFiles; !slices.Equal(got, want) {
			t.Errorf("vm %d: trusted_ca_files %q, want %q", vmid, got, want)
		}
	}
	if got := cfg.Lookup(8101).FeatureNeeds("trusted_ca"); got != "" {
		t.Errorf("8101 with the defaults' files: needs %q", got)
	}
	if got := cfg.Lookup(8103).FeatureNeeds("trusted_ca"); !strings.HasPrefix(got, "feature trusted_ca needs trusted_ca_files: ") {
		t.Errorf("8103 with none: needs %q", got)
	}
	if got := cfg.Lookup(8103).FeatureNeeds("base_setup"); got != "" {
		t.Errorf("base_setup needs %q", got)
	}
	// Where the config names a feature, for errors found later.
	if p := cfg.Lookup(8101).FeatureProblem(1, "x"); p.Pointer != "/vms/0/features/1" || fmt.Sprintf("%d:%d", p.Line, p.Column) != lineColOf(t, doc, `"trusted_ca"]},`) {
		t.Errorf("feature problem %+v", p)
	}
	var warned []string
	for _, w := range cfg.Warnings {
		warned = append(warned, w.String())
	}
	want := fmt.Sprintf("%s:%s: /vms/3/trusted_ca_files: does nothing without the trusted_ca feature in features", path, lineColOf(t, doc, `["/root/ca/x.crt"]`))
	if !slices.Equal(warned, []string{want}) {
		t.Errorf("warnings %q, want %q", warned, want)
	}
}

func TestCAFileName(t *testing.T) {
	for src, want := range map[string]string{
		"/etc/pve/phoenix/root_ca.crt": "root_ca.crt",
		"/root/Corp-Root.pem":          "Corp-Root.crt",
		"/root/issuing.cer":            "issuing.crt",
		"/root/bundle":                 "bundle.crt",
		"/root/.pem":                   ".pem.crt",
		"/root/ca.crt.pem":             "ca.crt.crt",
	} {
		if got := CAFileName(src); got != want {
			t.Errorf("CAFileName(%q) = %q, want %q", src, got, want)
		}
	}
}
