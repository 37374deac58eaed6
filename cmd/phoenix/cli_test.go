package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// parse parses args like Main does; kong wanting to exit fails the test.
func parse(t *testing.T, args ...string) (*CLI, string, error) {
	t.Helper()
	var cli CLI
	p, err := newParser(&cli, io.Discard, io.Discard, func(c int) { t.Fatalf("kong exit %d on %q", c, args) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := p.Parse(args)
	if err != nil {
		return nil, "", err
	}
	return &cli, ctx.Command(), nil
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args  []string
		cmd   string
		check func(c *CLI) any
		want  any
	}{
		{[]string{"run", "playbooks/create.yml", "--vmid", "8101", "--vmid", "8102", "--dry-run", "--diff", "--detailed-exitcode", "--forks", "3", "--feature-dir", dir},
			"run <playbook>", func(c *CLI) any { return c.Run },
			RunCmd{Playbook: "playbooks/create.yml", VMID: []int{8101, 8102}, RunFlags: RunFlags{DryRun: true, Diff: true, DetailedExitcode: true, Forks: 3, FeatureDir: []string{dir}}}},
		{[]string{"run", "stop", "--all"}, "run <playbook>", func(c *CLI) any { return c.Run },
			RunCmd{Playbook: "stop", All: true, RunFlags: RunFlags{Forks: 5}}},
		{[]string{"create", "8101", "8102"}, "create <vmid>", func(c *CLI) any { return c.Create.VMIDs }, []int{8101, 8102}},
		{[]string{"delete", "8101"}, "delete <vmid>", func(c *CLI) any { return c.Delete.VMIDs }, []int{8101}},
		{[]string{"start", "8101", "--forks", "2"}, "start <vmid>", func(c *CLI) any { return c.Start.Forks }, 2},
		{[]string{"stop", "8101", "--dry-run"}, "stop <vmid>", func(c *CLI) any { return c.Stop.DryRun }, true},
		{[]string{"plan", "8101", "--detailed-exitcode"}, "plan <vmid>", func(c *CLI) any { return c.Plan },
			PlanCmd{selection: selection{VMIDs: []int{8101}}, DetailedExitcode: true, Forks: 5}},
		{[]string{"plan", "8101", "--diff"}, "plan <vmid>", func(c *CLI) any { return c.Plan },
			PlanCmd{selection: selection{VMIDs: []int{8101}}, Diff: true, Forks: 5}},
		{[]string{"plan", "--all"}, "plan", func(c *CLI) any { return c.Plan.selection }, selection{All: true}},
		{[]string{"create", "--all"}, "create", func(c *CLI) any { return c.Create.selection }, selection{All: true}},
		{[]string{"delete", "--all", "--dry-run"}, "delete", func(c *CLI) any { return []any{c.Delete.All, c.Delete.DryRun} }, []any{true, true}},
		{[]string{"start", "--all"}, "start", func(c *CLI) any { return c.Start.All }, true},
		{[]string{"stop", "--all"}, "stop", func(c *CLI) any { return c.Stop.All }, true},
		{[]string{"render", "create", "--vmid", "8101"}, "render <playbook>", func(c *CLI) any { return c.Render }, RenderCmd{Playbook: "create", VMID: 8101}},
		{[]string{"validate", "--print-schema"}, "validate", func(c *CLI) any { return c.Validate.PrintSchema }, true},
		{[]string{"exec", "8101", "--", "ls", "-la", "/"}, "exec <vmid> <command>", func(c *CLI) any { argv, _ := c.Exec.argv(); return argv }, []string{"ls", "-la", "/"}},
		{[]string{"exec", "8101", "cat", "--", "-v"}, "exec <vmid> <command>", func(c *CLI) any { argv, _ := c.Exec.argv(); return argv }, []string{"cat", "--", "-v"}},
		{[]string{"exec", "8101", "--config", "c.json", "--", "findmnt"}, "exec <vmid> <command>", // the Makefile's form
			func(c *CLI) any { argv, _ := c.Exec.argv(); return append(argv, c.Config) }, []string{"findmnt", "c.json"}},
		{[]string{"run", "playbooks/create.yml", "--vmid", "8101", "--config", "c.json", "--output", "json"}, "run <playbook>",
			func(c *CLI) any { return []string{c.Run.Playbook, c.Config, c.Output} }, []string{"playbooks/create.yml", "c.json", "json"}},
		{[]string{"exec", "8101", "--timeout", "5s", "--", "true"}, "exec <vmid> <command>", func(c *CLI) any { return c.Exec.Timeout }, 5 * time.Second},
		{[]string{"version"}, "version", func(c *CLI) any { return c.Globals },
			Globals{Config: "./phoenix_vm_configs.json", Inventory: "./inventory.yml", Output: "text", HostKeys: "strict", SSHConfig: "~/.ssh/config"}},
		{[]string{"--config", "c.json", "--inventory", "i.yml", "--output", "json", "-vv", "--host-keys", "accept-new", "--ssh-config", "sc", "version"},
			"version", func(c *CLI) any { return c.Globals },
			Globals{Config: "c.json", Inventory: "i.yml", Output: "json", Verbose: 2, HostKeys: "accept-new", SSHConfig: "sc"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, cmd, err := parse(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if cmd != tc.cmd {
				t.Errorf("command %q, want %q", cmd, tc.cmd)
			}
			if got := tc.check(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestParseEnv(t *testing.T) {
	t.Setenv("PHOENIX_CONFIG", "/etc/phoenix/vms.json")
	t.Setenv("PHOENIX_INVENTORY", "/etc/phoenix/inventory.yml")
	c, _, err := parse(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if c.Config != "/etc/phoenix/vms.json" || c.Inventory != "/etc/phoenix/inventory.yml" {
		t.Errorf("config %q inventory %q, want the environment's", c.Config, c.Inventory)
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{
		{"run", "create"},                         // neither --vmid nor --all
		{"run", "create", "--vmid", "1", "--all"}, // both
		{"create"},                        // no vmid
		{"create", "8101", "--all"},       // both
		{"plan"},                          // neither
		{"delete", "--all", "8101"},       // both
		{"create", "web01"},               // not a number
		{"--output", "xml", "version"},    // bad enum
		{"--host-keys", "yes", "version"}, // bad enum
		{"render", "create"},              // --vmid required
		{"run", "create", "--all", "--feature-dir", "/nonexistent/phoenix-features"},
		{"frobnicate"},
		{"exec", "8101"}, // no command
	} {
		if _, _, err := parse(t, args...); err == nil {
			t.Errorf("%q parsed without error", args)
		}
	}
}

func TestHelpHasExamples(t *testing.T) {
	var c CLI
	p, err := newParser(&c, io.Discard, io.Discard, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range p.Model.Children {
		cmd := node.Name
		var out, errb bytes.Buffer
		if code := Main([]string{cmd, "--help"}, &out, &errb); code != 0 {
			t.Errorf("%s --help: exit %d, stderr %s", cmd, code, errb.String())
		}
		n := 0
		for _, l := range strings.Split(out.String(), "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "phoenix "+cmd) || strings.Contains(l, "<(phoenix "+cmd) {
				n++
			}
		}
		if want := min(2, len(examples[cmd])); !strings.Contains(out.String(), "Examples:") || n < want || want == 0 {
			t.Errorf("%s --help has %d examples, want %d at least:\n%s", cmd, n, max(want, 1), out.String())
		}
	}
	var out bytes.Buffer
	Main([]string{"--help"}, &out, io.Discard)
	if !strings.Contains(out.String(), "  phoenix create 8101\n") {
		t.Errorf("phoenix --help lacks the create example:\n%s", out.String())
	}
}

const testConfig = `{
  "vm_defaults": {"cores": 2, "memory_mb": 2048, "disk_size_gb": 32, "storage_pool": "local-lvm", "network_bridge": "vmbr0"},
  "vms": [
    {"vmid": 9000, "name": "tmpl", "is_template": true, "final_snapshot": false},
    {"vmid": 8101, "name": "web01", "clone_from_vmid": 9000, "traefik_service": {"name": "web"},
     "network_config": {"ip": "10.0.10.101/24", "gw": "10.0.10.1"},
     "user_config": {"username": "phoenix", "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUfAK618WpaLtS/jzITdU7UO5b5GFN+YCDSEsLc9ZY3 me@laptop"], "password": "hunter22"},
     "nfs_shares": [{"host_path": "/export/8101", "guest_path": "/mnt/data"}],
     "features": ["docker"]}
  ]
}`

const testInventory = `nodes:
  pve1:
    address: 127.0.0.1
    port: 1
    user: root
    pve_node: pve1
    nfs_server: 10.0.10.2
guest:
  via: direct
known_hosts: known_hosts
guest_known_hosts: guest_known_hosts
`

// files writes a config and an inventory into a temp dir and returns the
// global flags naming them.
func files(t *testing.T, config string) []string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return []string{"--config", write("phoenix_vm_configs.json", config), "--inventory", write("inventory.yml", testInventory),
		"--ssh-config", filepath.Join(dir, "no_ssh_config")}
}

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRenderEndToEnd(t *testing.T) {
	code, out, errs := run(append(files(t, testConfig), "render", "create", "--vmid", "8101")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"- name: clone from template\n  kind: vm_clone\n",
		"cipassword: (sensitive)",
		"cicustom: vendor=local:snippets/phoenix-8101-hostkey.yml",
		"- name: mount nfs /mnt/data\n  kind: nfs_mount\n",
		"- name: feature docker\n",
		"skip_reason: no pre-features snapshot configured",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter22") {
		t.Errorf("render printed the password:\n%s", out)
	}
	code, out, _ = run(append(files(t, testConfig), "--output", "json", "render", "delete", "--vmid", "8101")...)
	var steps []map[string]any
	if err := json.Unmarshal([]byte(out), &steps); code != 0 || err != nil || len(steps) != 3 {
		t.Errorf("json render: exit %d, %v, %d steps:\n%s", code, err, len(steps), out)
	}
}

func TestValidateEndToEnd(t *testing.T) {
	code, out, errs := run(append(files(t, testConfig), "validate")...)
	if code != 0 || !strings.Contains(out, "valid (2 VMs") || !strings.Contains(out, "traefik_service") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	bad := strings.Replace(testConfig, `"vmid": 8101`, `"vmid": "8101"`, 1)
	code, out, errs = run(append(files(t, bad), "validate")...)
	if code != 1 || !strings.Contains(errs, "/vms/1/vmid") || strings.Count(errs, "phoenix: ") != 1 {
		t.Errorf("bad config: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	code, out, _ = run("validate", "--print-schema")
	var schema map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &schema) != nil || schema["properties"] == nil {
		t.Errorf("--print-schema: exit %d:\n%.200s", code, out)
	}
}

func TestErrorsOnceAndAsJSONEvent(t *testing.T) {
	code, out, errs := run(append(files(t, testConfig), "--output", "json", "render", "create", "--vmid", "7777")...)
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev["event"] != "error" || !strings.Contains(ev["error"].(string), "vm 7777 is not defined") {
		t.Errorf("stdout %q is not one error event", out)
	}
	if strings.Count(errs, "vm 7777 is not defined") != 1 {
		t.Errorf("stderr: %q", errs)
	}
}

func TestRunNodeUnreachable(t *testing.T) {
	// 127.0.0.1:1 refuses: the run fails at the node, the VM never starts.
	code, out, errs := run(append(files(t, testConfig), "create", "8101")...)
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	if !strings.Contains(out, "8101: ok=0 changed=0 failed=1 skipped=0") || !strings.Contains(out, "node pve1: ") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.HasPrefix(errs, "phoenix: vm 8101: node pve1: ") || strings.Count(errs, "\n") != 1 {
		t.Errorf("stderr:\n%s", errs)
	}
}

// In JSON mode a failed run ends with its summary: the failure is in the
// task_end/vm_end events, not repeated as an error event; stderr has it once.
func TestRunFailureJSONEndsWithSummary(t *testing.T) {
	code, out, errs := run(append(files(t, testConfig), "--output", "json", "create", "8101")...)
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last, vmEnd map[string]any
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON event: %q", l)
		}
		if ev["event"] == "vm_end" {
			vmEnd = ev
		}
		last = ev
	}
	if last["event"] != "summary" || last["failed"] != 1.0 {
		t.Errorf("last line %v, want the summary with failed 1", last)
	}
	if e, _ := vmEnd["error"].(string); !strings.Contains(e, "node pve1: ") {
		t.Errorf("vm_end %v does not carry the failure", vmEnd)
	}
	if strings.Count(out, "node pve1: ") != 1 {
		t.Errorf("stdout repeats the failure:\n%s", out)
	}
	if !strings.HasPrefix(errs, "phoenix: vm 8101: node pve1: ") || strings.Count(errs, "\n") != 1 {
		t.Errorf("stderr:\n%s", errs)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run("version")
	if code != 0 || !strings.HasPrefix(out, "phoenix ") {
		t.Errorf("exit %d: %q", code, out)
	}
}

func TestVersionLine(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/phoenix-hv/phoenix", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-11-30T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{bi, "phoenix v0.3.0 (rev 0123456789ab, 2026-11-30T10:00:00Z, modified; go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "phoenix (devel) (go1.26.8)"},
		{nil, "phoenix (unknown version: built without module information)"},
	} {
		if got := versionLine(tc.bi); got != tc.want {
			t.Errorf("versionLine = %q, want %q", got, tc.want)
		}
	}
}

// TestVersionNamesTheRevision builds phoenix from a clone of this commit, as
// `make build` does, and runs `phoenix version`: it names the commit.
func TestVersionNamesTheRevision(t *testing.T) {
	git := func(dir string, args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	top := git(".", "rev-parse", "--show-toplevel")
	head := git(top, "rev-parse", "HEAD")
	clone := filepath.Join(t.TempDir(), "phoenix")
	git(top, "clone", "--quiet", "--no-checkout", top, clone)
	git(clone, "checkout", "--quiet", head)
	bin := filepath.Join(t.TempDir(), "phoenix")
	build := exec.Command("go", "build", "-o", bin, "./cmd/phoenix")
	build.Dir = clone
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=auto", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	// The toolchain also derives a pseudo-version from the commit.
	if want := "(rev " + head[:12] + ", "; err != nil || !strings.HasPrefix(string(out), "phoenix v") ||
		!strings.Contains(string(out), want) || strings.Contains(string(out), "modified") {
		t.Errorf("phoenix version: %q, %v; want a pseudo-version and %q, unmodified", out, err, want)
	}
}

func TestCreateAll(t *testing.T) {
	// The node refuses: the run ends at once, but on every VM of the config.
	code, out, _ := run(append(files(t, testConfig), "create", "--all")...)
	if code != 1 || !strings.HasPrefix(out, "create on vm 9000, 8101\n") || !strings.Contains(out, "9000: ok=0 changed=0 failed=1") {
		t.Errorf("create --all: exit %d\n%s", code, out)
	}
}

// phoenix status without a reachable node: every VM is there, its status
// unknown and why; the error is printed once, for the node.
func TestStatusNodeUnreachable(t *testing.T) {
	flags := files(t, testConfig)
	code, out, errs := run(append(flags, "status")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 3 || !regexp.MustCompile(`^VMID\s+NAME\s+NODE\s+STATUS\s+TEMPLATE\s+NOTE$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^9000\s+tmpl\s+pve1\s+unknown\s+yes\s+node pve1: `).MatchString(lines[1]) ||
		!regexp.MustCompile(`^8101\s+web01\s+pve1\s+unknown\s+no\s+node pve1: `).MatchString(lines[2]) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	if !strings.HasPrefix(errs, "phoenix: node pve1: ") || strings.Count(errs, "\n") != 1 {
		t.Errorf("stderr: %q", errs)
	}
	code, out, _ = run(append(flags, "--output", "json", "status", "8101", "--check")...)
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 1 || len(rows) != 1 {
		t.Fatalf("json: exit %d, %v:\n%s", code, err, out)
	}
	if r := rows[0]; r["vmid"] != 8101.0 || r["node"] != "pve1" || r["status"] != "unknown" || r["exists"] != false ||
		r["pending"] != nil || !strings.HasPrefix(r["error"].(string), "node pve1: ") {
		t.Errorf("json row %v", r)
	}
	if code, _, errs = run(append(flags, "status", "7777")...); code != 1 || !strings.Contains(errs, "vm 7777 is not defined") {
		t.Errorf("unknown vmid: exit %d, %q", code, errs)
	}
}
