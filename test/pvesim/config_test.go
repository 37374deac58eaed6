package pvesim

import (
	"reflect"
	"testing"
)

// A config in Proxmox's own layout: description as leading # lines (":"
// and control characters percent-encoded), sorted keys, then [PENDING],
// [special:cloudinit] and the snapshots sorted by name.
const fullConfig = `#web server%3A production
#second line
agent: enabled=1
cores: 2
memory: 2048
name: web01
parent: post-upgrade

[PENDING]
cores: 4
delete: onboot

[special:cloudinit]
ciuser: olduser

[post-upgrade]
#no-description here
cores: 2
parent: pre-upgrade
snaptime: 1714648841

[pre-upgrade]
cores: 2
snaptime: 1714644903
`

func TestConfigRoundTrip(t *testing.T) {
	c := parseConfig([]byte(fullConfig))
	if got, want := c.main["description"], "web server: production\nsecond line"; got != want {
		t.Errorf("description = %q, want %q", got, want)
	}
	if got := c.snaps["post-upgrade"]["description"]; got != "no-description here" {
		t.Errorf("snapshot description = %q", got)
	}
	if !reflect.DeepEqual(c.pending, map[string]string{"cores": "4", "delete": "onboot"}) {
		t.Errorf("pending = %v", c.pending)
	}
	if c.cloudinit["ciuser"] != "olduser" || len(c.snaps) != 2 {
		t.Errorf("cloudinit = %v, snaps = %v", c.cloudinit, c.snaps)
	}
	if got := string(c.encode()); got != fullConfig {
		t.Errorf("encode() changed the file:\n%s\nwant:\n%s", got, fullConfig)
	}
	want := map[string]string{"agent": "enabled=1", "cores": "4", "memory": "2048", "name": "web01",
		"parent": "post-upgrade", "description": "web server: production\nsecond line"}
	if got := c.withPending(); !reflect.DeepEqual(got, want) {
		t.Errorf("withPending() = %v, want %v", got, want)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"32G": 32 << 30, "3584M": 3584 << 20, "1.5G": 3 << 29, "512": 512, "1T": 1 << 40} {
		if got, ok := parseSize(in); !ok || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for in, want := range map[int64]string{32 << 30: "32G", 3584 << 20: "3584M", 1 << 40: "1T", 1000: "1000", 3 << 29: "1536M"} {
		if got := formatSize(in); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", in, got, want)
		}
	}
}
