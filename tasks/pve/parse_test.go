package pve

import (
	"errors"
	"reflect"
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
)

// The `qm config` example of the reference (4.3), plus the keys it names
// elsewhere: sshkeys URL-encoded, masked cipassword, lock, template.
const refConfig = `agent: enabled=1
boot: order=scsi0
cipassword: **********
cores: 2
ide2: local-lvm:vm-100-cloudinit,media=cdrom
ipconfig0: ip=10.0.10.123/24,gw=10.0.10.1
lock: backup
memory: 2048
meta: creation-qemu=9.0.2,ctime=1717000000
name: web01
net0: virtio=BC:24:11:12:34:56,bridge=vmbr0
onboot: 1
scsi0: local-lvm:vm-100-disk-0,size=32G
scsihw: virtio-scsi-pci
smbios1: uuid=6f1c...
sshkeys: ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIPhx%2Bk1%20admin%40laptop%0Assh-rsa%20AAAAB3NzaC1yc2EAAAADAQAB%2Fk2%3D%20ops%40ci%0A
template: 1
vmgenid: 0b6e...
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(refConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, got, want string
	}{
		{"plain value", cfg["cores"], "2"},
		{"property string", cfg["net0"], "virtio=BC:24:11:12:34:56,bridge=vmbr0"},
		{"value with colons", cfg["meta"], "creation-qemu=9.0.2,ctime=1717000000"},
		{"lock", cfg.Lock(), "backup"},
		{"masked password", cfg["cipassword"], "**********"},
		{"net0 MAC (model=MAC shorthand)", get(cfg.Props("net0", "model"), "virtio"), "BC:24:11:12:34:56"},
		{"net0 bridge", get(cfg.Props("net0", "model"), "bridge"), "vmbr0"},
		{"disk volume is the default key", get(cfg.Props("scsi0", "file"), "file"), "local-lvm:vm-100-disk-0"},
		{"disk size", get(cfg.Props("scsi0", "file"), "size"), "32G"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	if len(cfg) != 18 {
		t.Errorf("got %d keys, want 18", len(cfg))
	}
	if !cfg.Template() {
		t.Error("template: 1 not seen")
	}
	if size, err := cfg.DiskSize("scsi0"); err != nil || size != 32<<30 {
		t.Errorf("DiskSize(scsi0) = %d, %v; want 32 GiB", size, err)
	}
	if _, err := cfg.DiskSize("scsi1"); err == nil {
		t.Error("DiskSize of a missing disk: no error")
	}
	keys, err := cfg.SSHKeys()
	want := []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPhx+k1 admin@laptop", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB/k2= ops@ci"}
	if err != nil || !reflect.DeepEqual(keys, want) {
		t.Errorf("SSHKeys() = %q, %v; want %q", keys, err, want)
	}
}

func get(ps Props, key string) string {
	v, _ := ps.Get(key)
	return v
}

func TestParseConfigRejectsGarbage(t *testing.T) {
	for _, in := range []string{"no colon here\n", ": value\n", "two words: x\n"} {
		if _, err := ParseConfig([]byte(in)); err == nil {
			t.Errorf("ParseConfig(%q): no error", in)
		}
	}
	if cfg, err := ParseConfig(nil); err != nil || len(cfg) != 0 {
		t.Errorf("ParseConfig(empty) = %v, %v", cfg, err)
	}
}

func TestProps(t *testing.T) {
	tests := []struct {
		in, defaultKey, key, value, want string
	}{
		// The MAC stays, only the bridge changes.
		{"virtio=BC:24:11:12:34:56,bridge=vmbr0", "model", "bridge", "vmbr1", "virtio=BC:24:11:12:34:56,bridge=vmbr1"},
		{"virtio=BC:24:11:12:34:56", "model", "bridge", "vmbr1", "virtio=BC:24:11:12:34:56,bridge=vmbr1"},
		// A bare default value is written back bare.
		{"1,fstrim_cloned_disks=1", "enabled", "fstrim_cloned_disks", "0", "1,fstrim_cloned_disks=0"},
	}
	for _, tt := range tests {
		if got := ParseProps(tt.in, tt.defaultKey).With(tt.key, tt.value).String(); got != tt.want {
			t.Errorf("ParseProps(%q).With(%s=%s) = %q, want %q", tt.in, tt.key, tt.value, got, tt.want)
		}
	}
	if v, ok := ParseProps("1", "enabled").Get("enabled"); !ok || v != "1" {
		t.Errorf(`agent "1": enabled = %q, %v`, v, ok)
	}
}

func TestNorms(t *testing.T) {
	tests := []struct {
		name string
		norm func(string) string
		a, b string
		same bool
	}{
		{"agent 1 is enabled=1", agentNorm, "1", "enabled=1", true},
		{"agent on is enabled=1", agentNorm, "enabled=on", "enabled=1", true},
		{"agent 0 is not enabled=1", agentNorm, "0", "enabled=1", false},
		{"agent unset is not enabled=1", agentNorm, "", "enabled=1", false},
		{"ipconfig order", propNorm(""), "gw=10.0.10.1,ip=10.0.10.123/24", "ip=10.0.10.123/24,gw=10.0.10.1", true},
		{"ipconfig address", propNorm(""), "ip=10.0.10.124/24,gw=10.0.10.1", "ip=10.0.10.123/24,gw=10.0.10.1", false},
		{"memory current=", propNorm("current"), "current=2048", "2048", true},
		{"onboot unset is 0", boolNorm, "", "0", true},
		{"onboot unset is not 1", boolNorm, "", "1", false},
		{"startup order", propNorm("order"), "up=5,order=2", "order=2,up=5", true},
		{"nameserver spacing", words, "1.1.1.1  8.8.8.8", "1.1.1.1 8.8.8.8", true},
	}
	for _, tt := range tests {
		if got := tt.norm(tt.a) == tt.norm(tt.b); got != tt.same {
			t.Errorf("%s: same = %v, want %v", tt.name, got, tt.same)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"32G", 32 << 30, true},
		{"512M", 512 << 20, true},
		{"1T", 1 << 40, true},
		{"4K", 4 << 10, true},
		{"3584M", 3584 << 20, true},
		{"1.5G", 3 << 29, true},
		{"1048576", 1 << 20, true},
		{"", 0, false},
		{"G", 0, false},
		{"+10G", 0, false},
		{"-1G", 0, false},
		{"32GiB", 0, false},
		{"1.2.3G", 0, false},
		{"99999999999T", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := map[int64]string{32 << 30: "32G", 60 << 30: "60G", 512 << 20: "512M", 1 << 40: "1T", 3 << 29: "1536M", 1000: "1000"}
	for in, want := range tests {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeSSHKeys(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"ssh-ed25519%20AAAA%2Bx%20me%40host%0A%0A", []string{"ssh-ed25519 AAAA+x me@host"}, true},
		// A literal '+' is base64, not an encoded space.
		{"ssh-ed25519%20AAAA+x%20me%40host", []string{"ssh-ed25519 AAAA+x me@host"}, true},
		{"ssh-ed25519%2", nil, false},
	}
	for _, tt := range tests {
		got, err := DecodeSSHKeys(tt.in)
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("DecodeSSHKeys(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"status: running\n", "running", true},
		{"status: stopped\n", "stopped", true},
		{"status: paused\n", "paused", true},
		// --verbose output holds the status among other keys.
		{"cpus: 2\nqmpstatus: stopped\nstatus: stopped\nuptime: 0\n", "stopped", true},
		{"", "", false},
		{"status:\n", "", false},
	}
	for _, tt := range tests {
		got, err := ParseStatus([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseStatus(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSnapshots(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"reference tree", "`-> pre-upgrade                 2024-05-02 10:15:03     before apt upgrade\n" +
			" `-> post-upgrade               2024-05-02 11:00:41     no-description\n" +
			"  `-> current                                           You are here!\n",
			[]string{"pre-upgrade", "post-upgrade"}},
		{"no snapshots", "`-> current                                           You are here!\n", nil},
		{"names that prefix each other", "`-> final                       2024-05-03 09:00:00     no-description\n" +
			" `-> final-form                 2024-05-03 09:05:00     golden\n" +
			"  `-> current                                           You are here!\n",
			[]string{"final", "final-form"}},
		{"siblings and a 40-character name", "`-> base                        2024-05-01 08:00:00     no-description\n" +
			" `-> a-very-long-snapshot-name-of-forty-chars 2024-05-01 09:00:00     no-description\n" +
			" `-> pre-features               2024-05-01 10:00:00     before current work\n" +
			"  `-> current                                           You are here!\n",
			[]string{"base", "a-very-long-snapshot-name-of-forty-chars", "pre-features"}},
	}
	for _, tt := range tests {
		got, err := ParseSnapshots([]byte(tt.in))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	if _, err := ParseSnapshots([]byte("Configuration file 'nodes/pve/qemu-server/100.conf' does not exist\n")); err == nil {
		t.Error("an error text parsed as a snapshot tree")
	}
}

func TestErrorClassification(t *testing.T) {
	exit := func(code int, stderr string) error {
		return &transport.ExitError{Line: "qm x 100", Code: code, Stderr: []byte(stderr)}
	}
	tests := []struct {
		name         string
		err          error
		notExist     bool
		locked       string
		lockTimeout  bool
		running      bool
		shutdownWait bool
	}{
		{"config missing", exit(2, "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist\n"), true, "", false, false, false},
		{"config missing (stop, clone source)", exit(255, "unable to find configuration file for VM 999 on node 'pve'\n"), true, "", false, false, false},
		{"locked", exit(255, "VM is locked (backup)\n"), false, "backup", false, false, false},
		{"flock timeout", exit(255, "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout\n"), false, "", true, false, false},
		{"flock timeout inside create", exit(255, "unable to create VM 100 - can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout\n"), false, "", true, false, false},
		{"already running", exit(255, "VM 100 already running\n"), false, "", false, true, false},
		{"shutdown timeout", exit(255, "VM quit/powerdown failed - got timeout\n"), false, "", false, false, true},
		{"wrapped", fmtWrap(exit(255, "VM is locked (snapshot)\n")), false, "snapshot", false, false, false},
		{"other", exit(255, "snapshot feature is not available\n"), false, "", false, false, false},
		{"not an exit error", errors.New("VM is locked (backup)"), false, "", false, false, false},
		{"nil", nil, false, "", false, false, false},
	}
	for _, tt := range tests {
		if got := IsNotExist(tt.err); got != tt.notExist {
			t.Errorf("%s: IsNotExist = %v", tt.name, got)
		}
		if got := LockName(tt.err); got != tt.locked || IsLocked(tt.err) != (tt.locked != "") {
			t.Errorf("%s: LockName = %q, IsLocked = %v", tt.name, got, IsLocked(tt.err))
		}
		if got := IsLockTimeout(tt.err); got != tt.lockTimeout {
			t.Errorf("%s: IsLockTimeout = %v", tt.name, got)
		}
		if got := IsAlreadyRunning(tt.err); got != tt.running {
			t.Errorf("%s: IsAlreadyRunning = %v", tt.name, got)
		}
		if got := IsShutdownTimeout(tt.err); got != tt.shutdownWait {
			t.Errorf("%s: IsShutdownTimeout = %v", tt.name, got)
		}
	}
}

func fmtWrap(err error) error { return errors.Join(errors.New("step"), err) }
