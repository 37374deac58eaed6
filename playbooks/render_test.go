package playbooks

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
)

// recordingTask is what the test registry builds: it remembers its params.
type recordingTask struct {
	kind   string
	params map[string]any
}

func (recordingTask) Check(context.Context, *tasks.Env) (tasks.Change, error) {
	return tasks.Change{Action: tasks.None}, nil
}
func (recordingTask) Apply(context.Context, *tasks.Env, tasks.Change) error { return nil }

// testRegistry registers kinds whose factories record every call; a param
// named "bad" makes the factory refuse, as a task with a bad param would.
func testRegistry(calls *[]recordingTask, kinds ...string) tasks.Registry {
	reg := tasks.Registry{}
	for _, k := range kinds {
		reg[k] = func(params map[string]any) (tasks.Task, error) {
			if _, ok := params["bad"]; ok {
				return nil, errors.New("parameters: unknown field \"bad\"")
			}
			t := recordingTask{kind: k, params: params}
			*calls = append(*calls, t)
			return t, nil
		}
	}
	return reg
}

var allKinds = []string{"vm_place", "vm_clone", "vm_config", "vm_disk", "vm_start", "vm_stop", "vm_snapshot", "vm_destroy",
	"vm_image", "vm_create", "vm_firewall", "vm_template",
	"guest_hostkey", "guest_wait", "cloud_init", "nfs_mount", "file_inject", "feature", "guest_template_prep"}

func ptr[T any](v T) *T { return &v }

// vm8101 is VM 8101 as the loader gives it: defaults merged.
func vm8101() *inventory.VM {
	return &inventory.VM{
		VMID: 8101, Name: "web01", CloneFromVMID: 9000,
		Cores: 2, MemoryMB: 2048, DiskSizeGB: 50, StartAtBoot: ptr(true), NetworkBridge: "vmbr0",
		Features:  []string{"docker"},
		Snapshots: inventory.Snapshots{PreFeatures: "pre-features", PostFeatures: "provisioned"},
		NFSShares: []inventory.NFSShare{{HostPath: "/export/8101", GuestPath: "/mnt/data", Options: "defaults,auto,nofail"}},
		FileInjections: []inventory.FileInjection{
			{Source: "/root/motd", Destination: "/etc/motd", Mode: "0644"},
		},
		NetworkConfig: inventory.NetworkConfig{IP: "10.0.10.101/24", GW: "10.0.10.1", Nameserver: "10.0.10.1"},
		UserConfig: inventory.UserConfig{
			Username: "phoenix", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3 me@laptop"}, Password: "hunter22",
		},
		AgentTimeoutSeconds: 300,
		FinalSnapshot:       "final-form",
	}
}

func TestRenderCreateFor8101(t *testing.T) {
	pb, err := Load("create")
	if err != nil {
		t.Fatal(err)
	}
	var calls []recordingTask
	got, err := Render(pb, vm8101(), testRegistry(&calls, allKinds...))
	if err != nil {
		t.Fatal(err)
	}
	notTemplate := func(name, kind, reason string) ResolvedStep {
		return ResolvedStep{Name: name, Kind: kind, Skipped: true, SkipReason: reason}
	}
	want := []ResolvedStep{
		{Name: "node", Kind: "vm_place", Params: map[string]any{}},
		notTemplate("template image", "vm_image", "not a template"),
		notTemplate("create from image", "vm_create", "not a template built from a cloud image"),
		{Name: "clone from template", Kind: "vm_clone", Params: map[string]any{"source": 9000, "name": "web01", "full": true}},
		{Name: "core config", Kind: "vm_config", Params: map[string]any{
			"cores": 2, "memory": 2048, "onboot": true, "agent": "enabled=1", "bridge": "vmbr0",
			"ip": "10.0.10.101/24", "gw": "10.0.10.1", "nameserver": "10.0.10.1",
			"ciuser": "phoenix", "sshkeys": []any{"ssh-ed25519 AAAAC3 me@laptop"},
			"cipassword": inventory.Secret("hunter22"),
			"cicustom":   "vendor=local:snippets/phoenix-8101-hostkey.yml",
		}},
		notTemplate("firewall", "vm_firewall", "no firewall configured"),
		{Name: "grow disk", Kind: "vm_disk", Params: map[string]any{"disk": "scsi0", "size_gb": 50}},
		{Name: "pin guest host key", Kind: "guest_hostkey", Params: map[string]any{"state": "present"}},
		{Name: "start", Kind: "vm_start", Params: map[string]any{}},
		{Name: "wait for guest", Kind: "guest_wait", Params: map[string]any{"timeout_seconds": 300}},
		{Name: "cloud-init", Kind: "cloud_init", Params: map[string]any{"timeout_seconds": 300}},
		{Name: "mount nfs /mnt/data", Kind: "nfs_mount", Params: map[string]any{
			"export": "/export/8101", "path": "/mnt/data", "options": "defaults,auto,nofail"}},
		{Name: "snapshot pre-features", Kind: "vm_snapshot", Params: map[string]any{"name": "pre-features"}},
		{Name: "inject /etc/motd", Kind: "file_inject", Params: map[string]any{
			"source": "/root/motd", "destination": "/etc/motd", "mode": "0644"}},
		{Name: "feature docker", Kind: "feature", Params: map[string]any{"name": "docker"}},
		{Name: "snapshot post-features", Kind: "vm_snapshot", Params: map[string]any{"name": "provisioned"}},
		{Name: "final snapshot", Kind: "vm_snapshot", Params: map[string]any{"name": "final-form"}},
		notTemplate("clean for templating", "guest_template_prep", "not a template"),
		notTemplate("shut down for templating", "vm_stop", "not a template"),
		notTemplate("forget guest host key", "guest_hostkey", "not a template"),
		notTemplate("convert to template", "vm_template", "not a template"),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d steps, want %d:\n%s", len(got), len(want), dump(got))
	}
	built := 0
	for i := range want {
		if !want[i].Skipped {
			built++
			task, ok := got[i].Task.(recordingTask)
			if !ok || task.kind != want[i].Kind || !reflect.DeepEqual(task.params, want[i].Params) {
				t.Errorf("step %d: task built from %+v, want kind %s with the step's params", i+1, got[i].Task, want[i].Kind)
			}
		}
		got[i].Task = nil
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("step %d:\n got %#v\nwant %#v", i+1, got[i], want[i])
		}
	}
	if len(calls) != built {
		t.Errorf("factories called %d times, want once per step that runs (%d)", len(calls), built)
	}
}

func TestRenderCreateMinimalVM(t *testing.T) {
	pb, err := Load("create")
	if err != nil {
		t.Fatal(err)
	}
	vm := &inventory.VM{VMID: 8200, Name: "bare", AgentTimeoutSeconds: 300}
	var calls []recordingTask
	got, err := Render(pb, vm, testRegistry(&calls, allKinds...))
	if err != nil {
		t.Fatal(err)
	}
	var skipped []string
	for _, s := range got {
		if s.Skipped {
			if s.Task != nil || s.Params != nil {
				t.Errorf("skipped step %q has a task or params", s.Name)
			}
			skipped = append(skipped, s.Name+": "+s.SkipReason)
		}
	}
	wantSkipped := []string{
		"template image: not a template",
		"create from image: not a template built from a cloud image",
		"clone from template: no clone_from_vmid configured: the VM must exist already",
		"firewall: no firewall configured",
		"grow disk: no disk size configured",
		"mount nfs: no NFS shares configured",
		"snapshot pre-features: no pre-features snapshot configured, or a template (templates keep no snapshots)",
		"inject: no file injections configured",
		"feature: no features configured",
		"snapshot post-features: no post-features snapshot configured, or a template (templates keep no snapshots)",
		"final snapshot: final snapshot turned off (final_snapshot: false), or a template (templates keep no snapshots)",
		"clean for templating: not a template",
		"shut down for templating: not a template",
		"forget guest host key: not a template",
		"convert to template: not a template",
	}
	if !reflect.DeepEqual(skipped, wantSkipped) {
		t.Errorf("skipped:\n got %q\nwant %q", skipped, wantSkipped)
	}
	// Optional fields that are missing are left out, not sent as empty.
	cfg := got[4].Params
	wantCfg := map[string]any{"agent": "enabled=1", "cicustom": "vendor=local:snippets/phoenix-8200-hostkey.yml"}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("vm_config params = %#v, want %#v", cfg, wantCfg)
	}
}

func TestRenderedYAMLMasksSecrets(t *testing.T) {
	pb, err := Load("create")
	if err != nil {
		t.Fatal(err)
	}
	var calls []recordingTask
	steps, err := Render(pb, vm8101(), testRegistry(&calls, allKinds...))
	if err != nil {
		t.Fatal(err)
	}
	for name, marshal := range map[string]func(any) ([]byte, error){"yaml": yaml.Marshal, "json": json.Marshal} {
		out, err := marshal(steps)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "hunter22") {
			t.Errorf("%s output reveals the password:\n%s", name, out)
		}
		if !strings.Contains(string(out), "(sensitive)") {
			t.Errorf("%s output has no masked password:\n%s", name, out)
		}
	}
	// The task itself gets the real value.
	var p struct {
		Password string `json:"cipassword"`
	}
	params := map[string]any{"cipassword": calls[2].params["cipassword"]}
	if err := tasks.Decode(params, &p); err != nil || p.Password != "hunter22" {
		t.Errorf("task sees password %q (err %v), want the real value", p.Password, err)
	}
}

func dump(steps []ResolvedStep) string {
	b, _ := yaml.Marshal(steps)
	return string(b)
}

// renderOne parses a one-file playbook and renders it for vm.
func renderOne(t *testing.T, src string, vm *inventory.VM) ([]ResolvedStep, error) {
	t.Helper()
	pb, err := Parse("test.yml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var calls []recordingTask
	return Render(pb, vm, testRegistry(&calls, "k"))
}

func TestSubstitution(t *testing.T) {
	vm := vm8101()
	vm.Extra = map[string]json.RawMessage{"traefik_service": json.RawMessage(`{"name":"web","port":8080}`)}
	vm.NFSShares = append(vm.NFSShares, inventory.NFSShare{HostPath: "/export/8101b", GuestPath: "/mnt/b", Server: "10.0.0.9"})
	for _, tc := range []struct {
		name string
		with string // YAML of the with: map
		want map[string]any
	}{
		{"exact int keeps its type", `{x: "${vm.cores}"}`, map[string]any{"x": 2}},
		{"exact bool", `{x: "${vm.start_at_boot}"}`, map[string]any{"x": true}},
		{"exact list", `{x: "${vm.features}"}`, map[string]any{"x": []any{"docker"}}},
		{"exact map", `{x: "${vm.network_config}"}`, map[string]any{"x": map[string]any{
			"ip": "10.0.10.101/24", "gw": "10.0.10.1", "nameserver": "10.0.10.1"}}},
		{"key with dash", `{x: "${vm.snapshots.pre-features}"}`, map[string]any{"x": "pre-features"}},
		{"list index", `{x: "${vm.nfs_shares.1.server}"}`, map[string]any{"x": "10.0.0.9"}},
		{"unknown config key", `{x: "${vm.traefik_service.port}"}`, map[string]any{"x": 8080}},
		{"interpolated text", `{x: "vm-${vm.vmid}-${vm.name}.yml"}`, map[string]any{"x": "vm-8101-web01.yml"}},
		{"interpolated list is JSON", `{x: "keys=${vm.features}"}`, map[string]any{"x": `keys=["docker"]`}},
		{"optional missing is left out", `{x: "${vm.boot_order?}", y: 1}`, map[string]any{"y": 1}},
		{"optional missing in text is empty", `{x: "a${vm.boot_order?}b"}`, map[string]any{"x": "ab"}},
		{"optional missing in list drops the element", `{x: ["${vm.boot_order?}", "z"]}`, map[string]any{"x": []any{"z"}}},
		{"optional present", `{x: "${vm.cores?}"}`, map[string]any{"x": 2}},
		{"nested maps and literals", `{x: {y: ["${vm.name}", 3, 1.5, true]}}`, map[string]any{"x": map[string]any{"y": []any{"web01", 3, 1.5, true}}}},
		{"secret in text stays secret", `{x: "pw=${vm.user_config.password}"}`, map[string]any{"x": inventory.Secret("pw=hunter22")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := renderOne(t, "tasks:\n  - name: s\n    kind: k\n    with: "+tc.with+"\n", vm)
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != 1 || !reflect.DeepEqual(steps[0].Params, tc.want) {
				t.Fatalf("params = %#v, want %#v", steps[0].Params, tc.want)
			}
		})
	}
}

func TestLoopAndWhen(t *testing.T) {
	vm := vm8101()
	vm.NFSShares = append(vm.NFSShares, inventory.NFSShare{HostPath: "/export/b", GuestPath: "/mnt/b"})
	for _, tc := range []struct {
		name string
		step string // YAML of one step after "- name: …"
		want []string
	}{
		{"loop over list of maps", `{name: "m ${item.guest_path}", kind: k, loop: "${vm.nfs_shares}", with: {p: "${item.host_path}"}}`,
			[]string{"m /mnt/data p=/export/8101", "m /mnt/b p=/export/b"}},
		{"loop over strings", `{name: "f ${item}", kind: k, loop: "${vm.features}", with: {p: "${item}"}}`,
			[]string{"f docker p=docker"}},
		{"loop over missing list", `{name: "f ${item}", kind: k, loop: "${vm.volumes}", with: {p: "${item}"}}`,
			[]string{"f skipped: nothing in volumes"}},
		{"when per item", `{name: "m ${item.guest_path}", kind: k, loop: "${vm.nfs_shares}", when: "${item.options}", with: {p: "${item.host_path}"}}`,
			[]string{"m /mnt/data p=/export/8101", "m /mnt/b skipped: item.options is not set"}},
		{"when true", `{name: s, kind: k, when: "${vm.clone_from_vmid}", with: {p: 1}}`, []string{"s p=1"}},
		{"when missing is false", `{name: s, kind: k, when: "${vm.nope}", with: {p: 1}}`, []string{"s skipped: nope is not set"}},
		{"when false", `{name: s, kind: k, when: "${vm.is_template}", with: {p: 1}}`, []string{"s skipped: is_template is not set"}},
		{"when zero", `{name: s, kind: k, when: "${vm.count}", with: {p: 1}}`, []string{"s skipped: count is not set"}},
		{"when empty list", `{name: s, kind: k, when: "${vm.qm_options}", with: {p: 1}}`, []string{"s skipped: qm_options is not set"}},
		{"negated when, set", `{name: s, kind: k, when: "!${vm.clone_from_vmid}", with: {p: 1}}`, []string{"s skipped: clone_from_vmid is 9000"}},
		{"negated when, unset", `{name: s, kind: k, when: "!${vm.is_template}", with: {p: 1}}`, []string{"s p=1"}},
		{"skipped step does not resolve params", `{name: s, kind: k, when: "${vm.nope}", with: {p: "${vm.missing}"}}`,
			[]string{"s skipped: nope is not set"}},
		{"skip text", `{name: s, kind: k, when: "${vm.nope}", skip: "no nope for ${vm.name}", with: {p: 1}}`,
			[]string{"s skipped: no nope for web01"}},
		{"skip text of an empty loop", `{name: "f ${item}", kind: k, loop: "${vm.volumes}", skip: no volumes configured, with: {p: "${item}"}}`,
			[]string{"f skipped: no volumes configured"}},
		{"skip text per item", `{name: "m ${item.guest_path}", kind: k, loop: "${vm.nfs_shares}", when: "${item.options}", skip: "${item.guest_path} has no options", with: {p: 1}}`,
			[]string{"m /mnt/data p=1", "m /mnt/b skipped: /mnt/b has no options"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := renderOne(t, "tasks:\n  - "+tc.step+"\n", vm)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				if s.Skipped {
					got = append(got, s.Name+" skipped: "+s.SkipReason)
					continue
				}
				got = append(got, s.Name+" p="+text(s.Params["p"]))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWhenFalseValues(t *testing.T) {
	// The inventory always sets final_snapshot; "" (disabled) must skip.
	vm := &inventory.VM{VMID: 8300, Name: "x", StartAtBoot: ptr(false)}
	for when, wantReason := range map[string]string{
		"${vm.final_snapshot}":        "final_snapshot is empty",
		"${vm.start_at_boot}":         "start_at_boot is false",
		"${vm.agent_timeout_seconds}": "agent_timeout_seconds is 0",
	} {
		steps, err := renderOne(t, "tasks:\n  - {name: s, kind: k, when: \""+when+"\"}\n", vm)
		if err != nil {
			t.Fatal(err)
		}
		if !steps[0].Skipped || steps[0].SkipReason != wantReason {
			t.Errorf("when %s: skipped=%v reason %q, want %q", when, steps[0].Skipped, steps[0].SkipReason, wantReason)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown kind", "tasks:\n  - {name: a, kind: k}\n  - name: b\n    kind: nope\n",
			`test.yml:3: step "b": unknown kind "nope" (registered: k)`},
		{"missing path", "tasks:\n  - name: a\n    kind: k\n    with: {cores: \"${vm.corez}\"}\n",
			`test.yml:2: step "a": with.cores: vm.corez is not set`},
		{"missing path in text", "tasks:\n  - {name: a, kind: k, with: {x: \"id-${vm.nope.deeper}\"}}\n",
			`test.yml:2: step "a": with.x: vm.nope.deeper is not set`},
		{"missing path in list", "tasks:\n  - {name: a, kind: k, with: {x: [1, \"${vm.nope}\"]}}\n",
			`test.yml:2: step "a": with.x[1]: vm.nope is not set`},
		{"missing path in name", "tasks:\n  - {name: \"a ${vm.nope}\", kind: k}\n",
			`test.yml:2: step "a nope": name: vm.nope is not set`},
		{"item outside a loop", "tasks:\n  - {name: a, kind: k, with: {x: \"${item.y}\"}}\n",
			`test.yml:2: step "a": with.x: item.y: item is only set in a step with a loop`},
		{"unknown root", "tasks:\n  - {name: a, kind: k, with: {x: \"${env.HOME}\"}}\n",
			`test.yml:2: step "a": with.x: env.HOME: a reference starts with vm. or item.`},
		{"loop over a non-list", "tasks:\n  - {name: a, kind: k, loop: \"${vm.name}\"}\n",
			`test.yml:2: step "a": loop: name is web01, not a list`},
		{"playbook when", "when: \"!${env.X}\"\ntasks:\n  - {name: a, kind: k}\n",
			`test.yml: when: env.X: a reference starts with vm. or item.`},
		{"an item's missing path names the item", "tasks:\n  - {name: \"m ${item.guest_path} on ${vm.name}\", kind: k, loop: \"${vm.nfs_shares}\", with: {p: \"${item.nope}\"}}\n",
			`test.yml:2: step "m … on web01": item 1 of nfs_shares: with.p: item.nope is not set`},
		{"skip text with a bad reference", "tasks:\n  - {name: a, kind: k, when: \"${vm.nope}\", skip: \"${env.X}\"}\n",
			`test.yml:2: step "a": skip: env.X: a reference starts with vm. or item.`},
		{"factory refuses params", "tasks:\n  - {name: a, kind: k, with: {bad: 1}}\n",
			`test.yml:2: step "a": k: parameters: unknown field "bad"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderOne(t, tc.src, vm8101())
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestPlaybookWhenSkipsTemplates(t *testing.T) {
	tmpl := &inventory.VM{VMID: 9000, Name: "tmpl", IsTemplate: true, Features: []string{"docker"}, AgentTimeoutSeconds: 300}
	pb, err := Load("start")
	if err != nil {
		t.Fatal(err)
	}
	var calls []recordingTask
	steps, err := Render(pb, tmpl, testRegistry(&calls, allKinds...))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != len(pb.Tasks) || len(calls) != 0 {
		t.Fatalf("start: %d steps, %d tasks built; want every step skipped, none built", len(steps), len(calls))
	}
	for _, s := range steps {
		if !s.Skipped || !strings.HasPrefix(s.SkipReason, "a template: ") {
			t.Errorf("start: step %q skipped=%v reason %q", s.Name, s.Skipped, s.SkipReason)
		}
	}
	pb, _ = Load("delete")
	if steps, err := Render(pb, tmpl, testRegistry(&calls, allKinds...)); err != nil || steps[1].Skipped {
		t.Errorf("delete of a template: %v, %+v; want it to run", err, steps)
	}
}

// create builds a template from its image: the template steps run, cloning
// and snapshots do not (qm template refuses a VM with snapshots).
func TestRenderCreateTemplate(t *testing.T) {
	tmpl := &inventory.VM{VMID: 9000, Name: "tmpl", IsTemplate: true, TemplateImage: "noble-server-cloudimg-amd64.img",
		TemplateImageSHA256: strings.Repeat("ab", 32), StoragePool: "local-zfs", NetworkBridge: "vmbr1", Cores: 2, MemoryMB: 2048, DiskSizeGB: 20,
		Features: []string{"docker"}, Snapshots: inventory.Snapshots{PostFeatures: "golden"}, FinalSnapshot: "final-form", AgentTimeoutSeconds: 300}
	pb, err := Load("create")
	if err != nil {
		t.Fatal(err)
	}
	var calls []recordingTask
	steps, err := Render(pb, tmpl, testRegistry(&calls, allKinds...))
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, s := range steps {
		if !s.Skipped {
			ran = append(ran, s.Kind)
		}
	}
	want := []string{"vm_place", "vm_image", "vm_create", "vm_config", "vm_disk", "guest_hostkey", "vm_start", "guest_wait", "cloud_init",
		"feature", "guest_template_prep", "vm_stop", "guest_hostkey", "vm_template"}
	if !reflect.DeepEqual(ran, want) {
		t.Errorf("steps that run: %v\nwant %v", ran, want)
	}
	image := map[string]any{"image": "noble-server-cloudimg-amd64.img", "sha256": strings.Repeat("ab", 32), "storage": "local"}
	if !reflect.DeepEqual(steps[1].Params, image) {
		t.Errorf("vm_image params = %#v, want %#v", steps[0].Params, image)
	}
	create := map[string]any{"image": "noble-server-cloudimg-amd64.img", "sha256": strings.Repeat("ab", 32), "storage": "local",
		"name": "tmpl", "cores": 2, "memory": 2048, "bridge": "vmbr1", "disk_storage": "local-zfs"}
	if !reflect.DeepEqual(steps[2].Params, create) {
		t.Errorf("vm_create params = %#v, want %#v", steps[1].Params, create)
	}
}

// No name or skip reason of a built-in playbook shows a person `${…}`,
// whatever the VM sets or leaves out.
func TestBuiltinsSayNoReferences(t *testing.T) {
	tmpl := &inventory.VM{VMID: 9000, Name: "tmpl", IsTemplate: true, AgentTimeoutSeconds: 300}
	bare := &inventory.VM{VMID: 8200, Name: "bare", AgentTimeoutSeconds: 300}
	for _, name := range Builtins() {
		pb, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, vm := range []*inventory.VM{tmpl, bare, vm8101()} {
			var calls []recordingTask
			steps, err := Render(pb, vm, testRegistry(&calls, allKinds...))
			if err != nil {
				t.Fatalf("%s for vm %d: %v", name, vm.VMID, err)
			}
			for _, s := range steps {
				if strings.Contains(s.Name+s.SkipReason, "${") {
					t.Errorf("%s for vm %d: step %q, skip reason %q", name, vm.VMID, s.Name, s.SkipReason)
				}
			}
		}
	}
}

// file_injections[].sensitive reaches the file_inject task; left out, it
// is not sent at all.
func TestRenderSensitiveInjection(t *testing.T) {
	pb, err := Load("create")
	if err != nil {
		t.Fatal(err)
	}
	vm := &inventory.VM{VMID: 8200, Name: "bare", AgentTimeoutSeconds: 300, FileInjections: []inventory.FileInjection{
		{Source: "/root/token", Destination: "/etc/app/token", Sensitive: true},
		{Source: "/root/motd", Destination: "/etc/motd"},
	}}
	var calls []recordingTask
	got, err := Render(pb, vm, testRegistry(&calls, allKinds...))
	if err != nil {
		t.Fatal(err)
	}
	var params []map[string]any
	for _, s := range got {
		if s.Kind == "file_inject" {
			params = append(params, s.Params)
		}
	}
	want := []map[string]any{
		{"source": "/root/token", "destination": "/etc/app/token", "sensitive": true},
		{"source": "/root/motd", "destination": "/etc/motd"},
	}
	if !reflect.DeepEqual(params, want) {
		t.Errorf("file_inject params\n got %#v\nwant %#v", params, want)
	}
}
