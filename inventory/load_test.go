package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes doc to a temp phoenix_vm_configs.json and returns its path.
func writeConfig(t testing.TB, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "phoenix_vm_configs.json")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lineColOf is where the first occurrence of marker starts in doc, computed
// independently of the loader's scanner.
func lineColOf(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("marker %q not in doc", marker)
	}
	line := strings.Count(doc[:i], "\n") + 1
	col := i - strings.LastIndex(doc[:i], "\n")
	return fmt.Sprintf("%d:%d", line, col)
}

func TestLoadConfigOriginal(t *testing.T) {
	cfg, err := LoadConfig("testdata/original_vm_configs.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.VMs) != 3 {
		t.Fatalf("got %d VMs, want 3", len(cfg.VMs))
	}
	tmpl, portainer, agent := cfg.Lookup(9000), cfg.Lookup(1001), cfg.Lookup(1002)
	if tmpl == nil || portainer == nil || agent == nil {
		t.Fatal("missing a VM")
	}
	if !tmpl.IsTemplate || tmpl.TemplateImage != "noble-server-cloudimg-amd64.img" {
		t.Errorf("template 9000 = %+v", tmpl)
	}
	if tmpl.NetworkConfig.Searchdomain != "internal.thinkheads.ai" {
		t.Errorf("searchdomain = %q", tmpl.NetworkConfig.Searchdomain)
	}
	wantStacks := []DockerStack{{Name: "portainer_service"}, {Name: "thinkheads_ai_app"}}
	if !reflect.DeepEqual(portainer.DockerStacks, wantStacks) {
		t.Errorf("docker_stacks = %+v, want %+v", portainer.DockerStacks, wantStacks)
	}
	wantNFS := []NFSShare{{Server: "10.0.0.13", HostPath: "/quickOS/vm-persistent-data/1001", GuestPath: "/mnt/persistent", Options: "defaults,auto,nofail"}}
	if !reflect.DeepEqual(portainer.NFSShares, wantNFS) {
		t.Errorf("nfs_shares = %+v, want %+v", portainer.NFSShares, wantNFS)
	}
	if len(portainer.Volumes) != 1 || portainer.Volumes[0].Name != "" {
		t.Errorf("volumes not kept as read: %+v", portainer.Volumes)
	}
	// The original's port is dport.
	wantRules := []FirewallRule{
		{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "9443", Source: "10.0.0.12", Comment: "Traefik to Portainer UI"},
		{Type: "in", Action: "ACCEPT", Proto: "icmp", Comment: "ping from anywhere"},
		{Type: "out", Action: "ACCEPT", Proto: "udp", DPort: "53", Dest: "10.0.0.13", Comment: "DNS"},
	}
	if portainer.Firewall == nil || portainer.Firewall.Enabled || !reflect.DeepEqual(portainer.Firewall.Rules, wantRules) {
		t.Errorf("firewall = %+v, want disabled with %+v", portainer.Firewall, wantRules)
	}
	if string(portainer.Extra["traefik_service"]) == "" || string(portainer.Extra["swarm_role"]) != `"manager"` {
		t.Errorf("extra = %v", portainer.Extra)
	}
	// vm_defaults fill what 1002 leaves out; its own memory_mb stays.
	if agent.Cores != 2 || agent.MemoryMB != 4096 || agent.DiskSizeGB != 50 || agent.StoragePool != "quickOS-vm-disks" || agent.NetworkBridge != "vmbr0" {
		t.Errorf("defaults not merged: %+v", agent)
	}
	if portainer.Cores != 4 || portainer.DiskSizeGB != 100 {
		t.Errorf("VM values overridden by defaults: cores %d disk %d", portainer.Cores, portainer.DiskSizeGB)
	}
	if agent.AgentTimeoutSeconds != 300 || agent.FinalSnapshot != "final-form" {
		t.Errorf("phoenix defaults: timeout %d final %q", agent.AgentTimeoutSeconds, agent.FinalSnapshot)
	}
	if got := agent.DependsOn(); !reflect.DeepEqual(got, []int{9000, 1001}) {
		t.Errorf("1002 DependsOn = %v", got)
	}

	doc, _ := os.ReadFile("testdata/original_vm_configs.json")
	want := map[string]string{
		"/vms/1/traefik_service":            `"traefik_service"`,
		"/vms/1/portainer_environment_name": `"portainer_environment_name"`,
		"/vms/1/portainer_agent_hostname":   `"portainer_agent_hostname"`,
		"/vms/1/swarm_role":                 `"swarm_role"`,
		"/vms/1/node_labels":                `"node_labels"`,
		"/vms/1/dependencies/0":             `"101"`,
	}
	got := map[string]Warning{}
	for _, w := range cfg.Warnings {
		got[w.Pointer] = w
	}
	for ptr, marker := range want {
		w, ok := got[ptr]
		if !ok {
			t.Errorf("no warning at %s; warnings: %v", ptr, cfg.Warnings)
			continue
		}
		if at := fmt.Sprintf("%d:%d", w.Line, w.Column); at != lineColOf(t, string(doc), marker) {
			t.Errorf("warning %s at %s, want %s", ptr, at, lineColOf(t, string(doc), marker))
		}
		if !strings.HasPrefix(w.String(), "testdata/original_vm_configs.json:") {
			t.Errorf("warning does not name the file: %s", w)
		}
	}
	if _, ok := got["/vms/1/dependencies/3"]; ok {
		t.Error("dependency 9000 is defined in the file but warned about")
	}
}

func TestLoadConfigPhoenix(t *testing.T) {
	cfg, err := LoadConfig("testdata/phoenix_vm_configs.json")
	if err != nil {
		t.Fatal(err)
	}
	vm := cfg.Lookup(8101)
	if vm == nil {
		t.Fatal("no VM 8101")
	}
	if vm.CloneFromVMID != 9000 || !reflect.DeepEqual(vm.DependsOn(), []int{9000}) {
		t.Errorf("clone %d deps %v", vm.CloneFromVMID, vm.DependsOn())
	}
	if want := []NFSShare{{HostPath: "/export/8101", GuestPath: "/mnt/persistent", Options: DefaultNFSOptions}}; !reflect.DeepEqual(vm.NFSShares, want) {
		t.Errorf("nfs_shares = %+v", vm.NFSShares)
	}
	if want := []FileInjection{{Source: "/root/phoenix/motd", Destination: "/etc/motd", Mode: "0644", Owner: "root:root"}}; !reflect.DeepEqual(vm.FileInjections, want) {
		t.Errorf("file_injections = %+v", vm.FileInjections)
	}
	if vm.AgentTimeoutSeconds != 120 || vm.FinalSnapshot != "final-form" {
		t.Errorf("timeout %d final %q", vm.AgentTimeoutSeconds, vm.FinalSnapshot)
	}
	tmpl := cfg.Lookup(9000)
	if tmpl.FinalSnapshot != "" {
		t.Errorf("final_snapshot false gave %q", tmpl.FinalSnapshot)
	}
	if tmpl.TemplateImageSHA256 != "5a3e0e4c7ae1a8e2f4a4e6d43b1d41b9fb0a1b1d3c4b5a69788796a5b4c3d2e1" {
		t.Errorf("template_image_sha256 = %q, want it lower-case", tmpl.TemplateImageSHA256)
	}
	wantFW := &Firewall{Enabled: true, Rules: []FirewallRule{
		{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "22", Source: "10.20.0.0/24", Comment: "ssh from the LAN"},
		{Type: "in", Action: "ACCEPT", Proto: "icmp"},
	}}
	if !reflect.DeepEqual(vm.Firewall, wantFW) {
		t.Errorf("firewall = %+v, want %+v", vm.Firewall, wantFW)
	}
	abs, _ := filepath.Abs("testdata/keys/id_ed25519")
	if vm.GuestSSH.IdentityFile != abs {
		t.Errorf("guest_ssh.identity_file = %q, want %q", vm.GuestSSH.IdentityFile, abs)
	}
	if vm.UserConfig.Password.Reveal() != "hunter22-never-printed" || len(vm.UserConfig.SSHAuthorizedKeys) != 1 {
		t.Errorf("user_config = %+v", vm.UserConfig)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", cfg.Warnings)
	}
}

// testKeyLine is a real ed25519 public key (generated for these tests).
const testKeyLine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUfAK618WpaLtS/jzITdU7UO5b5GFN+YCDSEsLc9ZY3 me@laptop"

// vmDoc is a one-VM config with extra members spliced into the VM, the VM
// on line 3.
func vmDoc(members string) string {
	return "{\n\"vms\": [\n{\"vmid\": 8101, \"name\": \"a\"" + members + "}\n]}"
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		ptr  string // pointer the problem must name
		at   string // marker whose position the problem must give; "" = no position
		msg  string // substring of the message
	}{
		{"syntax", "{\n  \"vms\": [1 2]\n}", "", "2]", "invalid JSON"},
		{"syntax truncated", "{\"vms\": [", "", "[", "unexpected end"},
		{"not an object", `[1]`, "", "[1]", "got an array, want an object"},
		{"vms missing", `{"vm_defaults": {}}`, "/vms", `{"vm_defaults"`, "is required"},
		{"vms not array", `{"vms": {}}`, "/vms", `{}}`, "got an object, want an array"},
		{"vm not object", `{"vms": [7]}`, "/vms/0", `7]`, "got a number, want an object"},
		{"name missing", `{"vms": [{"vmid": 8101}]}`, "/vms/0/name", `{"vmid"`, "is required"},
		{"vmid too small", "{\"vms\": [\n{\"vmid\": 99, \"name\": \"a\"}]}", "/vms/0/vmid", "99", "between 100 and 999999999"},
		{"vmid too large", `{"vms": [{"vmid": 1000000000, "name": "a"}]}`, "/vms/0/vmid", "1000000000", "between 100 and 999999999"},
		{"vmid string", `{"vms": [{"vmid": "8101", "name": "a"}]}`, "/vms/0/vmid", `"8101"`, "got a string, want an integer"},
		{"vmid fraction", `{"vms": [{"vmid": 8101.5, "name": "a"}]}`, "/vms/0/vmid", "8101.5", "got a number, want an integer"},
		{"vmid 1.0", `{"vms": [{"vmid": 8101.0, "name": "a"}]}`, "/vms/0/vmid", "8101.0", "cannot be read as int"},
		{"name underscore", `{"vms": [{"vmid": 8101, "name": "my_vm"}]}`, "/vms/0/name", `"my_vm"`, "DNS name"},
		{"name trailing dash", `{"vms": [{"vmid": 8101, "name": "vm-"}]}`, "/vms/0/name", `"vm-"`, "DNS name"},
		{"name empty label", `{"vms": [{"vmid": 8101, "name": "a..b"}]}`, "/vms/0/name", `"a..b"`, "DNS name"},
		{"memory", vmDoc(`, "memory_mb": 8`), "/vms/0/memory_mb", "8}", "at least 16"},
		{"defaults memory", `{"vm_defaults": {"memory_mb": 15}, "vms": []}`, "/vm_defaults/memory_mb", "15", "at least 16"},
		{"cores", vmDoc(`, "cores": 0`), "/vms/0/cores", "0}", "at least 1"},
		{"disk", vmDoc(`, "disk_size_gb": -5`), "/vms/0/disk_size_gb", "-5", "at least 1"},
		{"boot order", vmDoc(`, "boot_order": -1`), "/vms/0/boot_order", "-1", "at least 0"},
		{"snapshot pattern", vmDoc(`, "snapshots": {"pre-features": "1st"}`), "/vms/0/snapshots/pre-features", `"1st"`, "snapshot name"},
		{"snapshot one char", vmDoc(`, "snapshots": {"post-features": "a"}`), "/vms/0/snapshots/post-features", `"a"}`, "snapshot name"},
		{"snapshot reserved", vmDoc(`, "snapshots": {"pre-features": "Current"}`), "/vms/0/snapshots/pre-features", `"Current"`, "not 'current'"},
		{"snapshot too long", vmDoc(`, "snapshots": {"pre-features": "` + strings.Repeat("s", 41) + `"}`), "/vms/0/snapshots/pre-features", `"sss`, "40 characters"},
		{"final snapshot bad", vmDoc(`, "final_snapshot": "final form"`), "/vms/0/final_snapshot", `"final form"`, "snapshot name"},
		{"final snapshot pending", vmDoc(`, "final_snapshot": "pending"`), "/vms/0/final_snapshot", `"pending"`, "snapshot name"},
		{"final snapshot number", vmDoc(`, "final_snapshot": 3`), "/vms/0/final_snapshot", `3}`, "snapshot name"},
		{"final snapshot twice", vmDoc(`, "snapshots": {"post-features": "done"}, "final_snapshot": "done"`), "/vms/0/final_snapshot", "\"done\"}\n", "also named in snapshots"},
		{"agent timeout low", vmDoc(`, "agent_timeout_seconds": 0`), "/vms/0/agent_timeout_seconds", "0}", "between 1 and 3600"},
		{"agent timeout high", vmDoc(`, "agent_timeout_seconds": 3601`), "/vms/0/agent_timeout_seconds", "3601", "between 1 and 3600"},
		{"feature name", vmDoc(`, "features": ["docker", "Base Setup"]`), "/vms/0/features/1", `"Base Setup"`, "feature name"},
		{"ip not cidr", vmDoc(`, "network_config": {"ip": "10.0.0.5"}`), "/vms/0/network_config/ip", `"10.0.0.5"`, "CIDR"},
		{"ip garbage", vmDoc(`, "network_config": {"ip": "static"}`), "/vms/0/network_config/ip", `"static"`, "dhcp or"},
		{"gw", vmDoc(`, "network_config": {"ip": "10.0.0.5/24", "gw": "10.0.0.300"}`), "/vms/0/network_config/gw", `"10.0.0.300"`, "IPv4 address"},
		{"mode not octal", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/d", "mode": "0988"}]`), "/vms/0/file_injections/0/mode", `"0988"`, "octal"},
		{"mode too big", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/d", "mode": "17777"}]`), "/vms/0/file_injections/0/mode", `"17777"`, "07777"},
		{"mode number", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/d", "mode": 644}]`), "/vms/0/file_injections/0/mode", `644`, "got a number, want a string"},
		{"owner", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/d", "owner": "root; rm -rf /"}]`), "/vms/0/file_injections/0/owner", `"root;`, "user:group"},
		{"file destination relative", vmDoc(`, "file_injections": [{"source": "/s", "destination": "etc/motd"}]`), "/vms/0/file_injections/0/destination", `"etc/motd"`, "absolute path"},
		{"file source missing", vmDoc(`, "file_injections": [{"destination": "/etc/motd"}]`), "/vms/0/file_injections/0/source", `{"destination"`, "is required"},
		{"nfs guest relative", vmDoc(`, "nfs_shares": [{"host_path": "/export/a", "guest_path": "mnt/a"}]`), "/vms/0/nfs_shares/0/guest_path", `"mnt/a"`, "absolute path"},
		{"nfs host relative", vmDoc(`, "nfs_shares": [{"host_path": "export/a", "guest_path": "/mnt/a"}]`), "/vms/0/nfs_shares/0/host_path", `"export/a"`, "absolute path"},
		{"nfs guest missing", vmDoc(`, "nfs_shares": [{"host_path": "/export/a"}]`), "/vms/0/nfs_shares/0/guest_path", `{"host_path"`, "is required"},
		{"volume mount relative", vmDoc(`, "volumes": [{"type": "nfs", "path": "/x", "mount_point": "mnt"}]`), "/vms/0/volumes/0/mount_point", `"mnt"`, "absolute path in the guest"},
		{"volume path relative", vmDoc(`, "volumes": [{"type": "nfs", "path": "x", "mount_point": "/mnt"}]`), "/vms/0/volumes/0/path", `"x"`, "absolute path on the NFS server"},
		{"volume nfs without mount point", vmDoc(`, "volumes": [{"type": "nfs", "path": "/x"}]`), "/vms/0/volumes/0/mount_point", `{"type"`, "is required"},
		{"duplicate guest path", vmDoc(`, "nfs_shares": [{"host_path": "/e/a", "guest_path": "/mnt/a"}, {"host_path": "/e/b", "guest_path": "/mnt/a"}]`), "/vms/0/nfs_shares/1/guest_path", `"/mnt/a"}]`, "already used at /vms/0/nfs_shares/0/guest_path"},
		{"duplicate guest path across kinds", vmDoc(`, "volumes": [{"type": "nfs", "path": "/e", "mount_point": "/data"}], "file_injections": [{"source": "/s", "destination": "/data"}]`), "/vms/0/file_injections/0/destination", `"/data"}]}`, "already used at /vms/0/volumes/0/mount_point"},
		// issue 8: what reaches a command line or a file, refused with its place.
		{"nfs guest root", vmDoc(`, "nfs_shares": [{"host_path": "/export/a", "guest_path": "/"}]`), "/vms/0/nfs_shares/0/guest_path", `"/"}`, "root file system"},
		{"nfs guest proc", vmDoc(`, "nfs_shares": [{"host_path": "/export/a", "guest_path": "/proc/x"}]`), "/vms/0/nfs_shares/0/guest_path", `"/proc/x"`, "must not replace /proc"},
		{"nfs guest efi", vmDoc(`, "nfs_shares": [{"host_path": "/export/a", "guest_path": "/boot/efi"}]`), "/vms/0/nfs_shares/0/guest_path", `"/boot/efi"`, "must not replace /boot"},
		{"nfs guest dotdot", vmDoc(`, "nfs_shares": [{"host_path": "/export/a", "guest_path": "/etc/.."}]`), "/vms/0/nfs_shares/0/guest_path", `"/etc/.."`, "must be a clean path"},
		{"nfs guest var", vmDoc(`, "nfs_shares": [{"host_path": "/export/a", "guest_path": "/var"}]`), "/vms/0/nfs_shares/0/guest_path", `"/var"`, "must not replace it"},
		{"volume mount sys", vmDoc(`, "volumes": [{"type": "nfs", "path": "/x", "mount_point": "/sys"}]`), "/vms/0/volumes/0/mount_point", `"/sys"`, "must not replace /sys"},
		{"nfs host dotdot", vmDoc(`, "nfs_shares": [{"host_path": "/export/../etc", "guest_path": "/mnt/a"}]`), "/vms/0/nfs_shares/0/host_path", `"/export/../etc"`, `write "/etc"`},
		{"newline in guest path", vmDoc(`, "nfs_shares": [{"host_path": "/export/a", "guest_path": "/mnt/a\nb"}]`), "/vms/0/nfs_shares/0/guest_path", `"/mnt/a\n`, `newline, \n) at byte 6`},
		{"newline in host path", vmDoc(`, "nfs_shares": [{"host_path": "/export/a\n/b", "guest_path": "/mnt/a"}]`), "/vms/0/nfs_shares/0/host_path", `"/export/a\n`, "newline"},
		{"NUL in destination", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/etc/x\u0000"}]`), "/vms/0/file_injections/0/destination", `"/etc/x\u0000"`, "NUL"},
		{"newline in source", vmDoc(`, "file_injections": [{"source": "/s\n", "destination": "/etc/x"}]`), "/vms/0/file_injections/0/source", `"/s\n"`, "newline"},
		{"escape in options", vmDoc(`, "nfs_shares": [{"host_path": "/e", "guest_path": "/mnt/a", "options": "rw\u001b"}]`), "/vms/0/nfs_shares/0/options", `"rw\u001b"`, "U+001B"},
		{"newline in identity file", vmDoc(`, "guest_ssh": {"identity_file": "/k\n"}`), "/vms/0/guest_ssh/identity_file", `"/k\n"`, "newline"},
		{"newline in password", vmDoc(`, "user_config": {"password": "pw\nroot::0:0"}`), "/vms/0/user_config/password", `"pw\n`, "newline"},
		{"DEL in nameserver", vmDoc(`, "network_config": {"nameserver": "10.0.0.2\u007f"}`), "/vms/0/network_config/nameserver", `"10.0.0.2\u007f"`, "DEL"},
		{"tab in docker stack", vmDoc(`, "docker_stacks": ["a\tb"]`), "/vms/0/docker_stacks/0", `"a\tb"`, "tab"},
		{"options with space", vmDoc(`, "nfs_shares": [{"host_path": "/e", "guest_path": "/mnt/a", "options": "rw, hard"}]`), "/vms/0/nfs_shares/0/options", `"rw, hard"`, "without spaces"},
		{"bridge with options", vmDoc(`, "network_bridge": "vmbr0,tag=99,firewall=0"`), "/vms/0/network_bridge", `"vmbr0,tag`, "must be a bridge name such as vmbr0, vmbr1 or vnet1"},
		{"defaults bridge with options", `{"vm_defaults": {"network_bridge": "vmbr0,tag=99"}, "vms": []}`, "/vm_defaults/network_bridge", `"vmbr0,tag=99"`, "bridge name"},
		{"bridge too long", vmDoc(`, "network_bridge": "vmbr0123456789ab"`), "/vms/0/network_bridge", `"vmbr0123456789ab"`, "at most 15 characters"},
		{"storage pool", vmDoc(`, "storage_pool": "local lvm"`), "/vms/0/storage_pool", `"local lvm"`, "Proxmox storage ID"},
		{"username option", vmDoc(`, "user_config": {"username": "-oProxyCommand=x"}`), "/vms/0/user_config/username", `"-oProxyCommand=x"`, "must be a Linux user name"},
		{"username upper", vmDoc(`, "user_config": {"username": "Admin"}`), "/vms/0/user_config/username", `"Admin"`, "Linux user name"},
		{"username too long", vmDoc(`, "user_config": {"username": "` + strings.Repeat("u", 33) + `"}`), "/vms/0/user_config/username", `"uuu`, "at most 32 characters"},
		{"guest ssh user option", vmDoc(`, "guest_ssh": {"user": "-oProxyCommand=x"}`), "/vms/0/guest_ssh/user", `"-oProxyCommand=x"`, "Linux user name"},
		{"guest ssh address option", vmDoc(`, "guest_ssh": {"address": "-oProxyCommand=x"}`), "/vms/0/guest_ssh/address", `"-oProxyCommand=x"`, "host name or an IP address"},
		{"ssh key garbage", vmDoc(`, "user_config": {"ssh_authorized_keys": ["` + testKeyLine + `", "my laptop key"]}`), "/vms/0/user_config/ssh_authorized_keys/1", `"my laptop key"`, `is not an SSH public key ("my laptop key"): no key type`},
		{"ssh key truncated", vmDoc(`, "user_config": {"ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPhoenixTestKeyOnly me@laptop"]}`), "/vms/0/user_config/ssh_authorized_keys/0", `"ssh-ed25519`, "not base64"},
		{"ssh keys in one string", vmDoc(`, "user_config": {"ssh_authorized_keys": ["` + testKeyLine + `\n` + testKeyLine + `"]}`), "/vms/0/user_config/ssh_authorized_keys/0", `"ssh-ed25519`, "newline"},
		{"gw outside subnet", vmDoc(`, "network_config": {"ip": "10.0.0.5/24", "gw": "10.0.1.1"}`), "/vms/0/network_config/gw", `"10.0.1.1"`, "outside the subnet of ip 10.0.0.5/24 (10.0.0.0/24)"},
		{"gw with dhcp", vmDoc(`, "network_config": {"ip": "dhcp", "gw": "10.0.0.1"}`), "/vms/0/network_config/gw", `"10.0.0.1"`, "not used with ip dhcp"},
		{"gw without ip", vmDoc(`, "network_config": {"gw": "10.0.0.1"}`), "/vms/0/network_config/gw", `"10.0.0.1"`, "needs ip"},
		{"gw is own address", vmDoc(`, "network_config": {"ip": "10.0.0.5/24", "gw": "10.0.0.5"}`), "/vms/0/network_config/gw", `"10.0.0.5"}`, "the VM's own address"},
		{"gw ipv6", vmDoc(`, "network_config": {"ip": "10.0.0.5/24", "gw": "fd00::1"}`), "/vms/0/network_config/gw", `"fd00::1"`, "IPv4 address"},
		{"ip ipv6", vmDoc(`, "network_config": {"ip": "fd00::5/64"}`), "/vms/0/network_config/ip", `"fd00::5/64"`, "IPv4 address in CIDR form"},
		{"ip prefix too short", vmDoc(`, "network_config": {"ip": "10.0.0.5/4"}`), "/vms/0/network_config/ip", `"10.0.0.5/4"`, "prefix 8 to 32"},
		{"nameserver comma", vmDoc(`, "network_config": {"nameserver": "10.0.0.2,10.0.0.3"}`), "/vms/0/network_config/nameserver", `"10.0.0.2,`, "separated by spaces"},
		{"searchdomain", vmDoc(`, "network_config": {"searchdomain": "my_lan"}`), "/vms/0/network_config/searchdomain", `"my_lan"`, "domain names"},
		{"destination trailing slash", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/etc/app/"}]`), "/vms/0/file_injections/0/destination", `"/etc/app/"`, "not a directory"},
		{"destination proc", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/proc/sys/x"}]`), "/vms/0/file_injections/0/destination", `"/proc/sys/x"`, "kernel or runtime filesystem"},
		{"source relative", vmDoc(`, "file_injections": [{"source": "motd", "destination": "/etc/motd"}]`), "/vms/0/file_injections/0/source", `"motd"`, "absolute path on the Proxmox node"},
		{"source not clean", vmDoc(`, "file_injections": [{"source": "/root/../etc/shadow", "destination": "/etc/motd"}]`), "/vms/0/file_injections/0/source", `"/root/..`, `write "/etc/shadow"`},
		{"sensitive not boolean", vmDoc(`, "file_injections": [{"source": "/s", "destination": "/etc/x", "sensitive": "yes"}]`), "/vms/0/file_injections/0/sensitive", `"yes"`, "got a string, want a boolean"},
		// issue 10: host_path may name the server; both places when they disagree.
		{"host path server disagrees", vmDoc(`, "nfs_shares": [{"host_path": "10.0.0.13:/export/a",` + "\n" + `"guest_path": "/mnt/a", "server": "10.0.0.14"}]`), "/vms/0/nfs_shares/0/server", `"10.0.0.14"`, "10.0.0.14 disagrees with server 10.0.0.13 in host_path (/vms/0/nfs_shares/0/host_path at 3:58)"},
		{"host path ipv6 disagrees", vmDoc(`, "nfs_shares": [{"host_path": "[fd00::2]:/export", "guest_path": "/mnt/a", "server": "fd00::3"}]`), "/vms/0/nfs_shares/0/server", `"fd00::3"`, "[fd00::3] disagrees with server [fd00::2] in host_path"},
		{"host path bad server", vmDoc(`, "nfs_shares": [{"host_path": "nas lan:/export", "guest_path": "/mnt/a"}]`), "/vms/0/nfs_shares/0/host_path", `"nas lan`, `server "nas lan" before ":/"`},
		{"host path without slash", vmDoc(`, "nfs_shares": [{"host_path": "nas:export", "guest_path": "/mnt/a"}]`), "/vms/0/nfs_shares/0/host_path", `"nas:export"`, "server:/path"},
		{"bad server", vmDoc(`, "nfs_shares": [{"host_path": "/export", "guest_path": "/mnt/a", "server": "-o x"}]`), "/vms/0/nfs_shares/0/server", `"-o x"`, "host name or an IP address"},
		{"volume bad server", vmDoc(`, "volumes": [{"type": "nfs", "path": "/x", "mount_point": "/mnt/x", "server": "a;b"}]`), "/vms/0/volumes/0/server", `"a;b"`, "host name or an IP address"},
		{"docker stack number", vmDoc(`, "docker_stacks": [5]`), "/vms/0/docker_stacks/0", `5]`, "got a number, want a string or an object"},
		{"dependency not numeric", vmDoc(`, "dependencies": ["lxc-101"]`), "/vms/0/dependencies/0", `"lxc-101"`, "numeric id"},
		{"guest ssh port", vmDoc(`, "guest_ssh": {"port": 70000}`), "/vms/0/guest_ssh/port", `70000`, "between 1 and 65535"},
		{"user password type", vmDoc(`, "user_config": {"password": 1234}`), "/vms/0/user_config/password", `1234`, "got a number, want a string"},
		{"duplicate key", vmDoc(`, "name": "b"`), "/vms/0/name", `"name": "b"`, `duplicate key "name", first at 3:16`},
		{"duplicate key escaped", "{\"vms\": [],\n\"a/b\": 1, \"a/b\": 2}", "/a~1b", `"a/b": 2`, `duplicate key "a/b", first at 2:1`},
		{"duplicate vmid", "{\"vms\": [\n{\"vmid\": 8101, \"name\": \"a\"},\n{\"vmid\": 8101, \"name\": \"b\"}]}", "/vms/1/vmid", "8101, \"name\": \"b\"", "duplicate vmid 8101 (first at /vms/0)"},
		{"clone source undefined", "{\"vms\": [\n{\"vmid\": 8101, \"name\": \"a\"},\n{\"vmid\": 8102, \"name\": \"b\", \"clone_from_vmid\": 9000}]}", "/vms/1/clone_from_vmid", "9000", "vm 9000 is not defined in this file (defined: 8101, 8102)"},
		{"cycle", "{\"vms\": [\n{\"vmid\": 8101, \"name\": \"a\", \"dependencies\": [\"8102\"]},\n{\"vmid\": 8102, \"name\": \"b\", \"clone_from_vmid\": 8101}]}", "/vms/1/clone_from_vmid", "8101}", "dependency cycle: 8101 -> 8102 -> 8101"},
		{"self dependency", vmDoc(`, "dependencies": [8101]`), "/vms/0/dependencies/0", "8101]", "dependency cycle: 8101 -> 8101"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.doc)
			cfg, err := LoadConfig(path)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got cfg %v, err %v; want a *ConfigError", cfg, err)
			}
			var found *Problem
			for i, p := range ce.Problems {
				if p.Pointer == tt.ptr && strings.Contains(p.Message, tt.msg) {
					found = &ce.Problems[i]
				}
			}
			if found == nil {
				t.Fatalf("no problem at %q containing %q in:\n%v", tt.ptr, tt.msg, err)
			}
			want := path + ":" + lineColOf(t, tt.doc, tt.at) + ": "
			if tt.ptr != "" {
				want += tt.ptr + ": "
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not contain %q:\n%v", want, err)
			}
		})
	}
}

func TestLoadConfigAllProblems(t *testing.T) {
	doc := "{\"vms\": [\n{\"vmid\": 99, \"name\": \"a_b\", \"memory_mb\": 4},\n{\"vmid\": 8102, \"name\": \"b\", \"clone_from_vmid\": 9000, \"network_config\": {\"ip\": \"x\"}}]}"
	_, err := LoadConfig(writeConfig(t, doc))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	var got []string
	for _, p := range ce.Problems {
		got = append(got, p.Pointer)
	}
	want := []string{"/vms/0/vmid", "/vms/0/name", "/vms/0/memory_mb", "/vms/1/clone_from_vmid", "/vms/1/network_config/ip"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems at %v, want %v (in file order)\n%v", got, want, err)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Error() has %d lines, want %d", len(lines), len(want))
	}
}

func TestLoadConfigWarnings(t *testing.T) {
	doc := "{\n\"generator\": \"hand\",\n\"vms\": [{\"vmid\": 8101, \"name\": \"a\",\n\"snapshots\": {\"pre_features\": \"snap\"},\n\"volumes\": [{\"type\": \"cifs\", \"path\": \"//srv/x\", \"mount_point\": \"/mnt/x\"}],\n\"dependencies\": [\"103\"],\n\"user_config\": {\"password_hash\": \"x\"}}]}"
	cfg, err := LoadConfig(writeConfig(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ ptr, at, msg string }{
		{"/generator", `"generator"`, "unknown key; kept"},
		{"/vms/0/snapshots/pre_features", `"pre_features"`, `did you mean "pre-features"?`},
		{"/vms/0/volumes/0/type", `"cifs"`, "ignored: phoenix mounts only nfs"},
		{"/vms/0/dependencies/0", `"103"`, "not a VM in this file"},
		{"/vms/0/user_config/password_hash", `"password_hash"`, "unknown key, ignored"},
	}
	for _, tt := range tests {
		var found bool
		for _, w := range cfg.Warnings {
			if w.Pointer == tt.ptr && strings.Contains(w.Message, tt.msg) {
				found = true
				if at := fmt.Sprintf("%d:%d", w.Line, w.Column); at != lineColOf(t, doc, tt.at) {
					t.Errorf("%s at %s, want %s", tt.ptr, at, lineColOf(t, doc, tt.at))
				}
			}
		}
		if !found {
			t.Errorf("no warning %q at %s in %v", tt.msg, tt.ptr, cfg.Warnings)
		}
	}
	if len(cfg.Warnings) != len(tests) {
		t.Errorf("got %d warnings, want %d: %v", len(cfg.Warnings), len(tests), cfg.Warnings)
	}
	if string(cfg.Extra["generator"]) != `"hand"` {
		t.Errorf("top-level extra = %v", cfg.Extra)
	}
	if vm := cfg.VMs[0]; vm.Name != "a" || len(vm.NFSShares) != 0 || len(vm.Volumes) != 1 || vm.Extra != nil {
		t.Errorf("vm = %+v", vm)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// A byte order mark is accepted and does not shift columns.
	doc := "\xef\xbb\xbf{\"vms\": [{\"vmid\": 1, \"name\": \"a\"}]}"
	_, err = LoadConfig(writeConfig(t, doc))
	if err == nil || !strings.Contains(err.Error(), ":1:"+fmt.Sprint(strings.Index(doc, "1,")+1)+": /vms/0/vmid") {
		t.Errorf("BOM: %v", err)
	}
}

func TestSchemaIsTheEmbeddedFile(t *testing.T) {
	onDisk, err := os.ReadFile("phoenix_vm_configs.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	s := Schema()
	if string(s) != string(onDisk) {
		t.Error("Schema() differs from phoenix_vm_configs.schema.json")
	}
	s[0] = 'X'
	if Schema()[0] == 'X' {
		t.Error("Schema() returns the embedded bytes themselves")
	}
}

func FuzzLoadConfig(f *testing.F) {
	for _, p := range []string{"testdata/original_vm_configs.json", "testdata/phoenix_vm_configs.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(vmDoc(`, "dependencies": [8101], "final_snapshot": true, "docker_stacks": ["x", {"name": "y"}]`)))
	f.Add([]byte(`{"vms": [{"vmid": 8101.0, "name": "a", "~/": {"a/b": 1}}]}`))
	f.Add([]byte("{\"vms\": [1 2]}"))
	val, err := newValidator()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(val, "fuzz.json", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			for _, vm := range cfg.VMs {
				_ = vm.Vars()
			}
			if _, err := cfg.Order(nil, true); err != nil {
				t.Fatalf("valid config does not order: %v", err)
			}
			return
		}
		var ce *ConfigError
		if errors.As(err, &ce) && len(ce.Problems) == 0 {
			t.Fatal("ConfigError without problems")
		}
	})
}

func TestAgentTimeout(t *testing.T) {
	for _, tc := range []struct {
		seconds int
		want    time.Duration
	}{{0, 300 * time.Second}, {45, 45 * time.Second}} {
		if got := (&VM{AgentTimeoutSeconds: tc.seconds}).AgentTimeout(); got != tc.want {
			t.Errorf("agent_timeout_seconds %d: %v, want %v", tc.seconds, got, tc.want)
		}
	}
}

// TestLoadConfigAccepts: values next to the refused ones load, and what
// they become.
func TestLoadConfigAccepts(t *testing.T) {
	doc := vmDoc(`, "network_bridge": "vnet1", "storage_pool": "quickOS-vm-disks",
"network_config": {"ip": "203.0.113.5/32", "gw": "172.31.1.1", "nameserver": "10.0.0.2 fd00::53", "searchdomain": "lan example.org"},
"user_config": {"username": "phoenix_user", "ssh_authorized_keys": ["` + testKeyLine + `", "no-pty ` + testKeyLine + `"]},
"guest_ssh": {"user": "ops", "address": "fd00::21"},
"nfs_shares": [
  {"host_path": "10.0.0.13:/export/a", "guest_path": "/mnt/x"},
  {"host_path": "[FD00:0::2]:/export/b", "guest_path": "/srv/x", "server": "fd00::2"},
  {"host_path": "NAS.lan:/", "guest_path": "/data", "server": "nas.LAN"},
  {"host_path": "/export/d", "guest_path": "/home/x", "server": "fd00::2", "options": "rw,hard,vers=4.2"},
  {"host_path": "/export/e", "guest_path": "/var/lib/app"},
  {"host_path": "/export/f", "guest_path": "/usr/local/share/models"}],
"volumes": [{"type": "nfs", "path": "/export/g", "mount_point": "/opt/app", "server": "nas.lan"}],
"file_injections": [{"source": "/root/secrets/token", "destination": "/etc/app/token", "sensitive": true}, {"source": "/root/motd", "destination": "/etc/motd"}]`)
	cfg, err := LoadConfig(writeConfig(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	vm := cfg.VMs[0]
	want := []NFSShare{
		{Server: "10.0.0.13", HostPath: "/export/a", GuestPath: "/mnt/x", Options: DefaultNFSOptions},
		{Server: "[fd00::2]", HostPath: "/export/b", GuestPath: "/srv/x", Options: DefaultNFSOptions},
		{Server: "nas.LAN", HostPath: "/", GuestPath: "/data", Options: DefaultNFSOptions},
		{Server: "[fd00::2]", HostPath: "/export/d", GuestPath: "/home/x", Options: "rw,hard,vers=4.2"},
		{HostPath: "/export/e", GuestPath: "/var/lib/app", Options: DefaultNFSOptions},
		{HostPath: "/export/f", GuestPath: "/usr/local/share/models", Options: DefaultNFSOptions},
		{Server: "nas.lan", HostPath: "/export/g", GuestPath: "/opt/app", Options: DefaultNFSOptions},
	}
	if !reflect.DeepEqual(vm.NFSShares, want) {
		t.Errorf("nfs_shares:\n got %+v\nwant %+v", vm.NFSShares, want)
	}
	if !vm.FileInjections[0].Sensitive || vm.FileInjections[1].Sensitive {
		t.Errorf("sensitive = %v, %v; want true, false (the default)", vm.FileInjections[0].Sensitive, vm.FileInjections[1].Sensitive)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}
