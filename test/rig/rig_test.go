package rig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dc "github.com/ory/dockertest/v3/docker"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/phoenix-hv/phoenix/inventory"
)

func TestRigWritesWhatPhoenixReads(t *testing.T) {
	r := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()

	invPath := filepath.Join(dir, "inventory.yml")
	if err := r.WriteInventory(invPath); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.LoadInventory(invPath, filepath.Join(dir, "no-ssh-config"))
	if err != nil {
		t.Fatalf("phoenix rejects the rig's inventory: %v", err)
	}
	n, err := inv.Home(nil, &inventory.VM{VMID: TestVMID})
	if err != nil {
		t.Fatal(err)
	}
	if n == nil || n.Address != "127.0.0.1" || n.Port != r.NodePort || n.User != "root" || n.IdentityFile != r.NodeKey || n.PVENode != PVENode || n.NFSServer != r.NodeIP() {
		t.Errorf("node %+v: want 127.0.0.1:%d root %s pve %s", n, r.NodePort, r.NodeKey, r.NodeIP())
	}
	if inv.Guest.User != GuestUser || inv.Guest.IdentityFile != r.GuestKey || inv.Guest.Via != "direct" || inv.KnownHosts != r.KnownHosts || inv.GuestKnownHosts != r.GuestKnownHosts {
		t.Errorf("inventory %+v / guest %+v", inv, inv.Guest)
	}

	cfgPath := filepath.Join(dir, "phoenix_vm_configs.json")
	if err := r.VMConfig().Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	cfg, err := inventory.LoadConfig(cfgPath)
	if err != nil {
		t.Fatalf("phoenix rejects the rig's VM config: %v", err)
	}
	vm := cfg.Lookup(TestVMID)
	if vm == nil || vm.CloneFromVMID != TemplateVMID || vm.NetworkConfig.IP != r.GuestIP(1)+"/24" || vm.NetworkConfig.GW != r.Gateway() {
		t.Fatalf("vm %d: %+v", TestVMID, vm)
	}
	if len(vm.NFSShares) != 1 || vm.NFSShares[0].Server != r.NodeIP() || vm.NFSShares[0].HostPath != "/export/data" {
		t.Errorf("nfs shares %+v", vm.NFSShares)
	}
	if len(vm.FileInjections) != 1 || vm.FileInjections[0].Source != InjectSource {
		t.Errorf("file injections %+v", vm.FileInjections)
	}
	if len(vm.UserConfig.SSHAuthorizedKeys) != 1 || vm.UserConfig.SSHAuthorizedKeys[0] != r.GuestPubKey {
		t.Errorf("ssh keys %v", vm.UserConfig.SSHAuthorizedKeys)
	}

	// What the config points at exists on the node and in the export.
	res, err := r.NodeExec(ctx, "sh", "-c", "cat "+InjectSource+" /export/data/hello.txt; qm config 9000")
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("node: %v %v", err, res.Err())
	}
	for _, want := range []string{r.InjectContent(), "exported by the rig node\n", "template: 1\n", "agent: enabled=1\n",
		"ide2: local-lvm:vm-9000-cloudinit,media=cdrom\n", "scsi0: local-lvm:base-9000-disk-0,size=32G\n"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("node lacks %q:\n%s", want, res.Stdout)
		}
	}
	env, _ := r.NodeExec(ctx, "cat", "/etc/pvesim/env")
	for _, want := range []string{"PVESIM_HOST_DIR=" + r.Dir + "\n", "PVESIM_NETWORK=" + r.Network + "\n", "PVESIM_GUEST_IMAGE=" + r.Images.Guest + "\n", "PVESIM_RIG_ID=" + r.ID + "\n", "PVESIM_NODE=pve\n"} {
		if !strings.Contains(env.Stdout, want) {
			t.Errorf("/etc/pvesim/env lacks %q:\n%s", want, env.Stdout)
		}
	}
}

func TestNodeHostKeyIsPinned(t *testing.T) {
	r := New(t)
	key, err := os.ReadFile(r.NodeKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(knownHostsFile string) error {
		cb, err := knownhosts.New(knownHostsFile)
		if err != nil {
			return err
		}
		c, err := ssh.Dial("tcp", r.NodeAddr(), &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: cb, Timeout: 5 * time.Second})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(r.KnownHosts); err != nil {
		t.Fatalf("ssh with the rig's known_hosts: %v", err)
	}
	// Another host's keys under the node's name must be refused.
	other := filepath.Join(t.TempDir(), "known_hosts")
	pub, err := writeKeyPair(filepath.Join(t.TempDir(), "k"), "impostor")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := knownHostsLines(r.NodeAddr(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := dial(other); err == nil || !strings.Contains(err.Error(), "key mismatch") {
		t.Errorf("ssh with a wrong pinned key: %v, want a key mismatch", err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	r, err := Start(ctx, Options{Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	runGuest(t, r, 8199, 99)
	left, err := r.Leftovers(ctx)
	if err != nil || len(left) != 5 {
		t.Errorf("a running rig with one guest: Leftovers = %q, %v; want node, mirror, guest, template 9000's disk and network", left, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if left, err := r.Leftovers(ctx); err != nil || len(left) != 0 {
		t.Errorf("left behind: %q, %v", left, err)
	}
	if _, err := os.Stat(r.Dir); !os.IsNotExist(err) {
		t.Errorf("rig folder %s: %v, want it gone", r.Dir, err)
	}
}

func TestReapOrphansRemovesRigsOfDeadOwnersOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := done.Process.Pid
	suffix := make([]byte, 3)
	rand.Read(suffix)
	mk := func(name string, pid int) string {
		t.Helper()
		id := name + hex.EncodeToString(suffix)
		dir, err := os.MkdirTemp("", "phoenix-rig-"+id+"-")
		if err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{labelID: id, labelDir: dir, labelOwnerPID: strconv.Itoa(pid)}
		if _, err := pool.Client.CreateNetwork(dc.CreateNetworkOptions{Name: "phoenix-rig-" + id, Driver: "bridge", Labels: labels}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = teardown(context.Background(), pool, id, dir) })
		return id
	}
	dead := mk("dead", deadPID)
	live := mk("live", 1) // pid 1 is alive as long as the machine is
	reapOrphans(ctx, pool, t.Logf)

	if nets, _ := pool.NetworksByName("phoenix-rig-" + dead); len(nets) != 0 {
		t.Errorf("network of the dead owner's rig %s survived", dead)
	}
	if nets, _ := pool.NetworksByName("phoenix-rig-" + live); len(nets) != 1 {
		t.Errorf("network of the live owner's rig %s was removed", live)
	}
}

func TestDockerNotRunningSaysHowToStartIt(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	_, err := connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Docker is not") || !strings.Contains(err.Error(), "docker") {
		t.Fatalf("connect to a dead socket: %v", err)
	}
	if !strings.Contains(err.Error(), "service docker start") && !strings.Contains(err.Error(), "apt-get install -y docker.io") {
		t.Errorf("error %q does not say how to get Docker going", err)
	}
}
