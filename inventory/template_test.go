package inventory

import (
	"fmt"
	"strings"
	"testing"
)

func TestResolveImage(t *testing.T) {
	tests := []struct {
		image, base string
		want        ImageSource
		err         string
	}{
		{image: "noble-server-cloudimg-amd64.img",
			want: ImageSource{URL: "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img", File: "noble-server-cloudimg-amd64.img", Content: "iso"}},
		{image: "debian-12-genericcloud-amd64.qcow2", base: "https://cloud.debian.org/images/cloud/bookworm/latest",
			want: ImageSource{URL: "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2", File: "debian-12-genericcloud-amd64.qcow2", Content: "import"}},
		{image: "jammy-server-cloudimg-amd64.img", base: "http://mirror.lan/ubuntu/{release}/",
			want: ImageSource{URL: "http://mirror.lan/ubuntu/jammy/jammy-server-cloudimg-amd64.img", File: "jammy-server-cloudimg-amd64.img", Content: "iso"}},
		{image: "http://10.210.3.3/phoenix-rig-debian-12-amd64.qcow2", base: "https://ignored/",
			want: ImageSource{URL: "http://10.210.3.3/phoenix-rig-debian-12-amd64.qcow2", File: "phoenix-rig-debian-12-amd64.qcow2", Content: "import"}},
		{image: "https://example.org/images/alma.raw?sig=1",
			want: ImageSource{URL: "https://example.org/images/alma.raw?sig=1", File: "alma.raw", Content: "import"}},
		{image: "rocky.ISO", base: "http://m/", want: ImageSource{URL: "http://m/rocky.ISO", File: "rocky.ISO", Content: "iso"}},
		{image: "images/noble.img", err: "must be a file name"},
		{image: "ftp://example.org/noble.img", err: "only http:// and https://"},
		{image: "https:///noble.img", err: "no host"},
		{image: "https://user:pw@example.org/noble.img", err: "credentials in the URL"},
		{image: "https://example.org/", err: `the file name "/"`},
		{image: "noble server.img", err: `"noble server.img" must be letters`},
		{image: "noble-server-cloudimg-amd64.img.xz", err: "must end in .img, .iso, .qcow2, .raw or .vmdk"},
		{image: "disk.QCOW2", base: "http://m/", err: "must end in"},
	}
	for _, tt := range tests {
		got, err := ResolveImage(tt.image, tt.base)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ResolveImage(%q, %q) = %+v, %v; want error %q", tt.image, tt.base, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveImage(%q, %q) = %+v, %v; want %+v", tt.image, tt.base, got, err, tt.want)
		}
	}
}

// tmplDoc is a config with template 9000 (members spliced in) on line 3.
func tmplDoc(members string) string {
	return "{\n\"vms\": [\n{\"vmid\": 9000, \"name\": \"tpl\", \"is_template\": true" + members + "}\n]}"
}

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestTemplateAndFirewallProblems(t *testing.T) {
	tests := []struct {
		name, doc, ptr, at, msg string
	}{
		{"sha256 short", tmplDoc(`, "template_image": "a.img", "template_image_sha256": "abc"`), "/vms/0/template_image_sha256", `"abc"`, "64 hexadecimal digits"},
		{"image and clone", tmplDoc(`, "template_image": "a.img", "template_image_sha256": "` + sum + `", "clone_from_vmid": 9000`), "/vms/0/clone_from_vmid", `9000}`, "not both"},
		{"image path", tmplDoc(`, "template_image": "/var/lib/vz/a.img"`), "/vms/0/template_image", `"/var/lib/vz/a.img"`, "must be a file name"},
		{"image compressed", tmplDoc(`, "template_image": "https://x.org/a.qcow2.gz"`), "/vms/0/template_image", `"https://x.org/a.qcow2.gz"`, "cannot be imported"},
		{"image empty", tmplDoc(`, "template_image": ""`), "/vms/0/template_image", `""`, "must be a cloud image file name"},
		{"base url not http", `{"vm_defaults": {"template_image_base_url": "file:///srv/img/"}, "vms": []}`, "/vm_defaults/template_image_base_url", `"file:`, "http:// or https:// URL"},
		{"rule type", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "forward", "action": "ACCEPT"}]}`), "/vms/0/firewall/rules/0/type", `"forward"`, "must be in or out"},
		{"rule action", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "allow"}]}`), "/vms/0/firewall/rules/0/action", `"allow"`, "ACCEPT, DROP or REJECT"},
		{"rule needs type", vmDoc(`, "firewall": {"enabled": true, "rules": [{"action": "DROP"}]}`), "/vms/0/firewall/rules/0/type", `{"action"`, "is required"},
		{"rule proto typo", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "proto": "tpc"}]}`), "/vms/0/firewall/rules/0/proto", `"tpc"`, "Proxmox would skip the rule"},
		{"rule port without proto", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "dport": "22"}]}`), "/vms/0/firewall/rules/0/dport", `"22"`, "needs proto tcp"},
		{"rule icmp port", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "proto": "icmp", "port": "8"}]}`), "/vms/0/firewall/rules/0/port", `"8"`, "icmp has no ports"},
		{"rule port and dport", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "proto": "tcp", "port": "80", "dport": "80"}]}`), "/vms/0/firewall/rules/0/port", `"80", "dport"`, "give one of them"},
		{"rule port range", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "90:80"}]}`), "/vms/0/firewall/rules/0/dport", `"90:80"`, "ranges lo:hi"},
		{"rule port too big", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "proto": "udp", "sport": "70000"}]}`), "/vms/0/firewall/rules/0/sport", `"70000"`, "0 to 65535"},
		{"rule source spaces", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "source": "10.0.0.1, 10.0.0.2"}]}`), "/vms/0/firewall/rules/0/source", `"10.0.0.1,`, "without spaces"},
		{"rule mixed ip versions", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "ACCEPT", "source": "10.0.0.0/24,fd00::/64"}]}`), "/vms/0/firewall/rules/0/source", `"10.0.0.0/24,`, "mixes IPv4 and IPv6"},
		{"rule icmp to v6", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "out", "action": "ACCEPT", "proto": "icmp", "dest": "fd00::1"}]}`), "/vms/0/firewall/rules/0/dest", `"fd00::1"`, "IPv6 addresses in a rule for icmp"},
		{"rule slash zero", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "DROP", "source": "0.0.0.0/0"}]}`), "/vms/0/firewall/rules/0/source", `"0.0.0.0/0"`, "/0 network"},
		{"rule bad range", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "DROP", "source": "10.0.0.9-10.0.0.1"}]}`), "/vms/0/firewall/rules/0/source", `"10.0.0.9-`, "not an address range"},
		{"rule comment newline", vmDoc(`, "firewall": {"enabled": true, "rules": [{"type": "in", "action": "DROP", "comment": "a\nb"}]}`), "/vms/0/firewall/rules/0/comment", `"a\nb"`, "newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantProblem(t, tt.doc, tt.ptr, tt.at, tt.msg) })
	}
}

func TestTemplateAndFirewallAccepted(t *testing.T) {
	doc := "{\"vm_defaults\": {\"template_image_base_url\": \"http://mirror.lan/{release}\"},\n\"vms\": [\n" +
		`{"vmid": 9000, "name": "tpl", "is_template": true, "template_image": "noble-server-cloudimg-amd64.img", "template_image_sha256": "` + strings.ToUpper(sum) + `"},` + "\n" +
		`{"vmid": 9001, "name": "tpl2", "is_template": true, "template_image": "https://x.org/d.qcow2", "template_image_sha256": "` + sum + `", "template_image_base_url": "https://other/"},` + "\n" +
		`{"vmid": 8101, "name": "a", "clone_from_vmid": 9000, "firewall": {"enabled": true, "rules": [
  {"type": "in", "action": "accept", "proto": "tcp", "dport": "22,80:85,https", "source": "10.0.0.0/24,10.1.0.5,10.2.0.1-10.2.0.9"},
  {"type": "in", "action": "ACCEPT", "proto": "icmpv6", "source": "fd00::/64"},
  {"type": "out", "action": "REJECT", "proto": "6", "sport": "1024:65535", "dest": "+dc/blocked"},
  {"type": "in", "action": "DROP", "source": "guest/badhost"}]}}]}`
	cfg, err := LoadConfig(writeConfig(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Lookup(9000); got.TemplateImageBaseURL != "http://mirror.lan/{release}" || got.TemplateImageSHA256 != sum {
		t.Errorf("9000: base %q sha %q", got.TemplateImageBaseURL, got.TemplateImageSHA256)
	}
	if got := cfg.Lookup(9001).TemplateImageBaseURL; got != "https://other/" {
		t.Errorf("9001 base %q: the VM's own value must win", got)
	}
	if r := cfg.Lookup(8101).Firewall.Rules[0]; r.Action != "ACCEPT" {
		t.Errorf("action %q, want ACCEPT", r.Action)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}

func TestTemplateWarnings(t *testing.T) {
	doc := "{\"vms\": [\n" +
		`{"vmid": 9000, "name": "tpl", "is_template": true, "template_image": "noble-server-cloudimg-amd64.img",` + "\n" +
		`"snapshots": {"post-features": "golden"}},` + "\n" +
		`{"vmid": 9001, "name": "byhand", "is_template": true, "template_image_sha256": "` + sum + `"},` + "\n" +
		`{"vmid": 8101, "name": "a", "template_image": "x.img"}]}`
	cfg, err := LoadConfig(writeConfig(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ ptr, at, msg string }{
		{"/vms/0/template_image", `"noble-server`, "no template_image_sha256: the downloaded image is not verified"},
		{"/vms/0/snapshots/post-features", `"golden"`, "a template keeps no snapshots"},
		{"/vms/1/is_template", `true, "template_image_sha256"`, "phoenix cannot build this template"},
		{"/vms/1/template_image_sha256", `"` + sum, "without template_image; ignored"},
		{"/vms/2/template_image", `"x.img"`, "only used with is_template: true"},
	}
	if len(cfg.Warnings) != len(want) {
		t.Errorf("got %d warnings, want %d: %v", len(cfg.Warnings), len(want), cfg.Warnings)
	}
	for _, w := range want {
		found := false
		for _, got := range cfg.Warnings {
			if got.Pointer == w.ptr && strings.Contains(got.Message, w.msg) && fmt.Sprintf("%d:%d", got.Line, got.Column) == lineColOf(t, doc, w.at) {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning %q at %s (%s) in %v", w.msg, w.ptr, lineColOf(t, doc, w.at), cfg.Warnings)
		}
	}
}
