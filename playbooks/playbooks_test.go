package playbooks

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLoadBuiltinNames(t *testing.T) {
	for _, name := range []string{"create", "create.yml", "playbooks/create.yml"} {
		t.Run(name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no playbooks/ here: the embedded one is used
			pb, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			if pb.Name != "create" || pb.File != "playbooks/create.yml" || len(pb.Tasks) != 21 {
				t.Fatalf("got %s from %s with %d tasks", pb.Name, pb.File, len(pb.Tasks))
			}
		})
	}
	if got, want := Builtins(), []string{"create", "delete", "start", "stop"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Builtins() = %v, want %v", got, want)
	}
}

func TestBuiltinPlaybooksShape(t *testing.T) {
	want := map[string][]string{
		"create": {"vm_place", "vm_image", "vm_create", "vm_clone", "vm_config", "vm_firewall", "vm_disk", "guest_hostkey", "vm_start",
			"guest_wait", "cloud_init", "nfs_mount", "vm_snapshot", "file_inject", "feature", "vm_snapshot", "vm_snapshot",
			"guest_template_prep", "vm_stop", "guest_hostkey", "vm_template"},
		"delete": {"vm_stop", "vm_destroy", "guest_hostkey"},
		"start":  {"vm_start", "guest_wait"},
		"stop":   {"vm_stop"},
	}
	for name, kinds := range want {
		pb, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range pb.Tasks {
			got = append(got, s.Kind)
		}
		if !reflect.DeepEqual(got, kinds) {
			t.Errorf("%s kinds = %v, want %v", name, got, kinds)
		}
	}
}

func TestLoadFromDisk(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	own := "name: mine\ntasks:\n  - {name: a, kind: vm_start}\n"
	if err := os.WriteFile("create.yml", []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	pb, err := Load("create.yml")
	if err != nil {
		t.Fatal(err)
	}
	if pb.Name != "mine" || pb.File != "create.yml" {
		t.Errorf("create.yml on disk: got %s from %s, want the file on disk", pb.Name, pb.File)
	}
	if pb, err := Load("create"); err != nil || pb.Name != "create" {
		t.Errorf("bare name: got %v, %v, want the built-in", pb, err)
	}
	sub := filepath.Join(dir, "x", "y.yml")
	os.MkdirAll(filepath.Dir(sub), 0o755)
	os.WriteFile(sub, []byte("tasks:\n  - {name: a, kind: vm_start}\n"), 0o644)
	if pb, err := Load(sub); err != nil || pb.Name != "y" || pb.Tasks[0].Line != 2 {
		t.Errorf("path: got %+v, %v; want name y from the file name, step at line 2", pb, err)
	}
	if _, err := Load("nope.yml"); err == nil || !strings.Contains(err.Error(), "not a built-in playbook (built-in: create, delete, start, stop)") {
		t.Errorf("missing: err = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope.yml")); err == nil {
		t.Error("missing absolute path: no error")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown key", "name: x\ntasks:\n  - name: a\n    kind: vm_start\n    whem: x\n", `p.yml:5:5: unknown field "whem"`},
		{"unknown top key", "name: x\nsteps: []\n", `p.yml:2:1: unknown field "steps"`},
		{"duplicate key", "name: x\ntasks:\n  - name: a\n    kind: vm_start\n    kind: vm_stop\n", `p.yml:5:5: mapping key "kind" already defined at [4:5]`},
		{"wrong type", "name: x\ntasks:\n  - name: a\n    kind: vm_start\n    with: [1, 2]\n", "p.yml:5:11: sequence was used where mapping is expected"},
		{"syntax", "name: x\ntasks:\n  - name: a\n   kind: b\n", "p.yml:4:4: value is not allowed in this context"},
		{"no tasks", "name: x\n", "p.yml: no tasks"},
		{"no kind", "tasks:\n  - name: a\n", "p.yml:2: step 1: kind is missing"},
		{"no name", "tasks:\n  - {kind: vm_start}\n", "p.yml:2: step 1: name is missing"},
		{"loop not a reference", "tasks:\n  - {name: a, kind: k, loop: \"x ${vm.y}\"}\n", `p.yml:2: step 1: loop must be one ${vm.path} reference, got "x ${vm.y}"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yml", []byte(tc.src))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant prefix %s", err, tc.want)
			}
		})
	}
}

func TestFeature(t *testing.T) {
	builtinDocker, err := Feature("docker", nil)
	if err != nil || !strings.Contains(string(builtinDocker), "set -eu") {
		t.Fatalf("built-in docker: %v\n%s", err, builtinDocker)
	}
	first, second := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(first, "mine.sh"), []byte("echo first"), 0o644)
	os.WriteFile(filepath.Join(second, "mine.sh"), []byte("echo second"), 0o644)
	os.WriteFile(filepath.Join(second, "docker.sh"), []byte("echo my docker"), 0o644)
	for _, tc := range []struct {
		name string
		dirs []string
		want string
	}{
		{"mine", []string{first, second}, "echo first"},
		{"mine", []string{second, first}, "echo second"},
		{"docker", []string{first, second}, "echo my docker"},
		{"docker", []string{first}, string(builtinDocker)},
	} {
		got, err := Feature(tc.name, tc.dirs)
		if err != nil || string(got) != tc.want {
			t.Errorf("Feature(%s, %v) = %q, %v; want %q", tc.name, tc.dirs, got, err, tc.want)
		}
	}
	for _, bad := range []string{"../etc/passwd", "a/b", "", ".hidden", "x..y"} {
		if _, err := Feature(bad, []string{first}); err == nil {
			t.Errorf("Feature(%q) accepted", bad)
		}
	}
	_, err = Feature("nope", []string{first})
	if err == nil || err.Error() != "no nope.sh in "+first+" or the built-in features (--feature-dir DIR adds a directory of NAME.sh scripts)" {
		t.Errorf("missing feature: %v", err)
	}
}

// Every built-in feature script is a POSIX sh script that parses (sh -n;
// dash on Debian and Ubuntu, as in their guests), and the original's set
// is there.
func TestBuiltinFeatureScripts(t *testing.T) {
	names, err := fs.Glob(builtin, "features/*.sh")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range names {
		b, _ := builtin.ReadFile(n)
		got = append(got, strings.TrimSuffix(path.Base(n), ".sh"))
		if !bytes.HasPrefix(b, []byte("#!/bin/sh\n")) || !bytes.Contains(b, []byte("\nset -eu\n")) {
			t.Errorf("%s: want #!/bin/sh and set -eu", n)
		}
		cmd := exec.Command("sh", "-n")
		cmd.Stdin = bytes.NewReader(b)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v\n%s", n, err, out)
		}
	}
	if want := []string{"base_setup", "docker", "trusted_ca"}; !slices.Equal(got, want) {
		t.Errorf("built-in features %q, want %q", got, want)
	}
}
