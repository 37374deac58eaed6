package pve

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

// A config file as qemu-server writes it (pve-more.md §4.1): description
// first as # lines, keys sorted, [PENDING] with a deletion list, the
// cloud-init record, snapshots sorted by name.
const fileWithEverything = `#web%3A the front end
#second line 100%
agent: enabled=1
cipassword: $5$abc$hash
cores: 2
memory: 2048
name: web01
onboot: 1
parent: post-upgrade
scsi0: local-lvm:vm-8101-disk-0,size=32G
sshkeys: ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIOuTestKey%20me%40laptop%0A

[PENDING]
cores: 4
delete: onboot,!agent
memory: 4096

[special:cloudinit]
ipconfig0: ip=10.0.10.123/24,gw=10.0.10.1

[post-upgrade]
#after the upgrade
cores: 2
memory: 2048
parent: pre-upgrade
snaptime: 1714644041

[pre-upgrade]
cores: 2
memory: 2048
snaptime: 1714641303
vmstate: local-lvm:vm-8101-state-pre-upgrade
`

func TestParseConfigFile(t *testing.T) {
	f := ParseConfigFile([]byte(fileWithEverything))
	want := Config{
		"description": "web%3A the front end%0Asecond line 100%",
		"cipassword":  "**********",
		"cores":       "4",
		"memory":      "4096",
		"name":        "web01",
		"parent":      "post-upgrade",
		"scsi0":       "local-lvm:vm-8101-disk-0,size=32G",
		"sshkeys":     "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIOuTestKey%20me%40laptop%0A",
	}
	if got := f.Shown(); !maps.Equal(got, want) {
		t.Errorf("Shown() =\n%v\nwant\n%v", got, want)
	}
	if d := f.Main["description"]; d != "web: the front end\nsecond line 100%" {
		t.Errorf("description %q", d)
	}
	if got := f.SnapshotNames(); !slices.Equal(got, []string{"pre-upgrade", "post-upgrade"}) {
		t.Errorf("snapshots %q", got)
	}
	if d := f.Snapshots["post-upgrade"]["description"]; d != "after the upgrade" {
		t.Errorf("snapshot description %q", d)
	}
	if !slices.Equal(f.Deletes, []string{"onboot", "agent"}) {
		t.Errorf("deletes %q", f.Deletes)
	}
	if h := f.PasswordHash(); h != "$5$abc$hash" {
		t.Errorf("password hash %q", h)
	}
	if _, ok := f.Main["ipconfig0"]; ok {
		t.Error("a value of [special:cloudinit] reached the main section")
	}
}

// Snapshots come in qm listsnapshot's order: down the tree, siblings by
// time, whatever their names.
func TestSnapshotOrder(t *testing.T) {
	file := `parent: s3
[s1]
snaptime: 300
[s2]
parent: s1
snaptime: 200
[s3]
parent: s1
snaptime: 100
[s4]
parent: s3
snaptime: 400
[zz]
snaptime: 50
[untimed]
[x]
`
	want := []string{"zz", "s1", "s3", "s4", "s2", "untimed"} // [x] is too short a name for a snapshot
	if got := ParseConfigFile([]byte(file)).SnapshotNames(); !slices.Equal(got, want) {
		t.Errorf("SnapshotNames() = %q, want %q", got, want)
	}
}

func TestParseConfigFileQuirks(t *testing.T) {
	tests := []struct {
		name, file string
		want       Config
		snaps      []string
	}{
		{name: "cdrom is ide2; blank lines and junk skipped", file: "cdrom: local:iso/x.iso,media=cdrom\n\n  \nnot a key line\nMEMORY: 1\nmemory: 512  \n",
			want: Config{"ide2": "local:iso/x.iso,media=cdrom", "memory": "512"}},
		{name: "pending section header in any case, deletions with ; and spaces", file: "cores: 1\nballoon: 0\nname: a\n[pending]\ndelete: balloon; name\n",
			want: Config{"cores": "1"}},
		{name: "an unknown section is skipped", file: "cores: 1\n[special:fleecing]\ncores: 9\n", want: Config{"cores": "1"}},
		{name: "snapshot headers any case; a header with a dot is no snapshot", file: "cores: 1\n[Snap_1]\ncores: 2\n[a.b]\ncores: 3\n",
			want: Config{"cores": "1"}, snaps: []string{"Snap_1"}},
		{name: "description as a key, control characters encoded", file: "description: tab%09here\ncores: 1\n",
			want: Config{"description": "tab%09here", "cores": "1"}},
		{name: "a broken escape stays", file: "#50%% off %zz\n", want: Config{"description": "50%% off %zz"}},
		{name: "a pending password replaces the stored one", file: "cipassword: $5$a\n[PENDING]\ncipassword: $6$b\n",
			want: Config{"cipassword": "**********"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ParseConfigFile([]byte(tt.file))
			if got := f.Shown(); !maps.Equal(got, tt.want) {
				t.Errorf("Shown() = %v, want %v", got, tt.want)
			}
			if got := f.SnapshotNames(); !slices.Equal(got, tt.snaps) && len(got)+len(tt.snaps) > 0 {
				t.Errorf("snapshots %q, want %q", got, tt.snaps)
			}
		})
	}
	if h := ParseConfigFile([]byte("cipassword: $5$a\n[PENDING]\ncipassword: $6$b\n")).PasswordHash(); h != "$6$b" {
		t.Errorf("pending hash %q", h)
	}
	if h := ParseConfigFile([]byte("cipassword: $5$a\n[PENDING]\ndelete: cipassword\n")).PasswordHash(); h != "" {
		t.Errorf("a pending deletion leaves hash %q", h)
	}
}

// Encoding and decoding the description as PVE::Tools does: every byte
// outside 0x20-0x7e, and ':', is escaped; '%' is not.
func TestTextEncoding(t *testing.T) {
	for _, s := range []string{"plain", "a: b", "line\nnext", "ünï", "100%", "tab\there"} {
		if got := decodeText(encodeText(s)); got != s {
			t.Errorf("round trip of %q: %q", s, got)
		}
	}
	if got := encodeText("a: 100%\n"); got != "a%3A 100%%0A" {
		t.Errorf("encodeText = %q", got)
	}
}

// runsAs applies Proxmox's three checks to what fileLines read.
func TestRunsAs(t *testing.T) {
	const pidfile = "/var/run/qemu-server/8101.pid"
	kvm := "/usr/bin/kvm\n-id\n8101\n-name\nweb01,debug-threads=on\n-pidfile\n/var/run/qemu-server/8101.pid\n-daemonize\n"
	tests := []struct {
		name, out string
		want      bool
	}{
		{"kvm with the pid file", "4242 (kvm) S 1 4242\n" + kvm, true},
		{"qemu-system binary", "4242 (qemu-system-x86) R 1\n/usr/bin/qemu-system-x86_64\n-pidfile\n" + pidfile + "\n", true},
		{"a name with a parenthesis and spaces", "4242 (a) b) S 1\n" + kvm, true},
		{"a zombie", "4242 (kvm) Z 1 4242\n" + kvm, false},
		{"another VM's pid file", "4242 (kvm) S 1\n/usr/bin/kvm\n-pidfile\n/var/run/qemu-server/8102.pid\n", false},
		{"another program", "4242 (sleep) S 1\n/bin/sleep\n-pidfile\n" + pidfile + "\n", false},
		{"-pidfile last, without its value", "4242 (kvm) S 1\n/usr/bin/kvm\n-pidfile\n", false},
		{"no stat", "", false},
	}
	for _, tt := range tests {
		if got := runsAs([]byte(tt.out), pidfile); got != tt.want {
			t.Errorf("%s: runsAs = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// qmpStatus talks QMP as qm status does: greeting, capabilities, then
// query-status, skipping events; no answer within 3 s prints nothing.
func TestQMPStatus(t *testing.T) {
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for _, tt := range []struct {
		name, status string
		silent       bool
	}{{"paused", "paused", false}, {"running", "running", false}, {"silent", "", true}} {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(dir, tt.name+".qmp")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if tt.silent {
					bufio.NewReader(c).ReadString('\n')
					return
				}
				fmt.Fprintf(c, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9}}, "capabilities": []}}`+"\n")
				r := bufio.NewReader(c)
				if l, _ := r.ReadString('\n'); !strings.Contains(l, "qmp_capabilities") {
					return
				}
				fmt.Fprint(c, "{\"return\": {}}\n")
				if l, _ := r.ReadString('\n'); !strings.Contains(l, "query-status") {
					return
				}
				fmt.Fprintf(c, "{\"timestamp\": {\"seconds\": 1}, \"event\": \"RESUME\"}\n{\"return\": {\"status\": %q, \"singlestep\": false, \"running\": false}}\n", tt.status)
			}()
			res, err := local.Shell{}.Run(context.Background(), transport.Cmd{Line: transport.Command("perl", "-e", qmpStatus, sock)})
			if err != nil && !tt.silent {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(res.Stdout)); got != tt.status {
				t.Errorf("status %q, want %q", got, tt.status)
			}
		})
	}
}

// FuzzParseConfigFile: any file parses without a panic; every snapshot is
// listed once; text without '%' survives encoding (PVE's encode_text
// leaves '%' alone, so "%3A" in a text cannot).
func FuzzParseConfigFile(f *testing.F) {
	f.Add([]byte(fileWithEverything))
	f.Add([]byte("[aa]\nparent: bb\n[bb]\nparent: aa\n")) // a loop of parents
	f.Add([]byte("name: x\n[PENDING]\ndelete: agent\n[special:cloudinit]\nipconfig0: ip=dhcp\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cf := ParseConfigFile(raw)
		names := cf.SnapshotNames()
		if len(names) != len(cf.Snapshots) {
			t.Fatalf("%d snapshot names %q for %d snapshots", len(names), names, len(cf.Snapshots))
		}
		for _, n := range names {
			if _, ok := cf.Snapshots[n]; !ok {
				t.Fatalf("snapshot %q listed but not in the file", n)
			}
		}
		_ = cf.Shown()
		_ = cf.PasswordHash()
		if s := string(raw); !strings.Contains(s, "%") && decodeText(encodeText(s)) != s {
			t.Fatalf("text %q does not survive encode and decode", s)
		}
	})
}

// No snapshots is nil, as the qm reader gives it: the two readers' States
// must be equal (TestStateReadersAgree compares them on the rig).
func TestNoSnapshotsIsNil(t *testing.T) {
	if got := ParseConfigFile([]byte("name: x\n")).SnapshotNames(); got != nil {
		t.Errorf("SnapshotNames() = %#v, want nil", got)
	}
}
