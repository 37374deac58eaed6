package rig

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dc "github.com/ory/dockertest/v3/docker"
	"golang.org/x/crypto/ssh"
)

// These tests run the guest image directly (without pvesim) on a rig network,
// with a NoCloud seed shaped like the one Proxmox renders, so the image's own
// promises are checked: cloud-init ends done, the agent answers on its socket,
// sshd lets the cloud-init user in, the fault switches work, the NFS
// stand-in refuses until nfs-common is installed and then mounts.

// runGuest starts the guest image as VM vmid at GuestIP(idx) with env added.
func runGuest(t *testing.T, r *Rig, vmid, idx int, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seed := filepath.Join(r.Dir, "seed", strconv.Itoa(vmid))
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	userData := fmt.Sprintf("#cloud-config\nhostname: vm%d\nmanage_etc_hosts: true\nuser: %s\nssh_authorized_keys:\n  - %s\nchpasswd:\n  expire: False\nusers:\n  - default\n", vmid, GuestUser, r.GuestPubKey)
	files := map[string]string{
		"meta-data": fmt.Sprintf("instance-id: rig-image-test-%d\n", vmid),
		"user-data": userData,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(seed, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := r.pool.Client.CreateContainer(dc.CreateContainerOptions{
		Name:   r.GuestContainer(vmid),
		Config: &dc.Config{Image: r.Images.Guest, Hostname: fmt.Sprintf("vm%d", vmid), Env: append([]string{"VMID=" + strconv.Itoa(vmid)}, env...)},
		HostConfig: &dc.HostConfig{
			Privileged: r.Privileged,
			CapAdd:     r.capAdd(),
			Binds: []string{
				seed + ":/var/lib/cloud/seed/nocloud",
				filepath.Join(r.Dir, "qga") + ":/run/qga",
				filepath.Join(r.Dir, "export") + ":/run/nfs-server",
			},
		},
		NetworkingConfig: &dc.NetworkingConfig{EndpointsConfig: map[string]*dc.EndpointConfig{
			r.Network: {IPAMConfig: &dc.EndpointIPAMConfig{IPv4Address: r.GuestIP(idx)}},
		}},
		Context: ctx,
	})
	if err != nil {
		t.Fatalf("create guest %d: %v", vmid, err)
	}
	if err := r.pool.Client.StartContainerWithContext(c.ID, nil, ctx); err != nil {
		t.Fatalf("start guest %d: %v", vmid, err)
	}
	return r.GuestIP(idx)
}

// qga sends one QGA command to the agent socket of vmid (as the node would)
// and returns the "return" member.
func qga(r *Rig, vmid int, command string) (json.RawMessage, error) {
	conn, err := net.DialTimeout("unix", filepath.Join(r.Dir, "qga", strconv.Itoa(vmid)+".qga"), 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "{\"execute\":%q}\n", command); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var reply struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Desc string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal(line, &reply); err != nil {
		return nil, fmt.Errorf("reply %q: %w", line, err)
	}
	if reply.Error != nil {
		return nil, errors.New(reply.Error.Desc)
	}
	return reply.Return, nil
}

// guestSSH logs in as the cloud-init user with the guest key, pinning the
// host key read through docker exec, and runs cmd.
func guestSSH(ctx context.Context, t *testing.T, r *Rig, vmid int, ip, cmd string) (string, error) {
	t.Helper()
	res, err := r.GuestExec(ctx, vmid, "sh", "-c", "cat /etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil || res.ExitCode != 0 {
		return "", fmt.Errorf("read guest host key: %v %v", err, res.Err())
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(res.Stdout))
	if err != nil {
		return "", err
	}
	key, err := os.ReadFile(r.GuestKey)
	if err != nil {
		return "", err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return "", err
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort(ip, "22"), &ssh.ClientConfig{
		User: GuestUser, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   ssh.FixedHostKey(hostKey),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

func waitCloudInit(ctx context.Context, t *testing.T, r *Rig, vmid int) string {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, err := r.WaitCloudInit(wctx, vmid)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustGuest(ctx context.Context, t *testing.T, r *Rig, vmid int, script string) string {
	t.Helper()
	res, err := r.GuestExec(ctx, vmid, "sh", "-c", script)
	if err != nil {
		t.Fatalf("guest %d: %s: %v", vmid, script, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("guest %d: %s: %v", vmid, script, res.Err())
	}
	return res.Stdout
}

func TestGuestImageBoots(t *testing.T) {
	r := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const vmid = 8191
	ip := runGuest(t, r, vmid, 91)

	status := waitCloudInit(ctx, t, r, vmid)
	if !strings.Contains(status, "status: done") {
		t.Fatalf("cloud-init status --long:\n%s\nwant status: done", status)
	}
	if _, err := qga(r, vmid, "guest-ping"); err != nil {
		t.Errorf("guest-ping on the agent socket: %v", err)
	}
	out, err := guestSSH(ctx, t, r, vmid, ip, "id -un; sudo -n true && echo sudo-ok")
	if err != nil || out != GuestUser+"\nsudo-ok\n" {
		t.Errorf("ssh %s@%s: %q, %v; want the cloud-init user with passwordless sudo", GuestUser, ip, out, err)
	}
	if got := mustGuest(ctx, t, r, vmid, "hostname"); strings.TrimSpace(got) != fmt.Sprintf("vm%d", vmid) {
		t.Errorf("hostname %q", got)
	}
}

func TestGuestImageFaults(t *testing.T) {
	r := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tests := []struct {
		name      string
		vmid, idx int
		env       string
		agent     bool // agent answers after boot
		ssh       bool // sshd accepts connections
		cloudInit bool // cloud-init ran
	}{
		{"agent-off", 8181, 81, "PHOENIX_FAULT_AGENT_OFF=1", false, true, true},
		{"ssh-off", 8182, 82, "PHOENIX_FAULT_SSH_OFF=1", true, false, true},
		{"agent-kill-after", 8183, 83, "PHOENIX_FAULT_AGENT_KILL_AFTER=1", false, true, true},
		{"boot-hang", 8184, 84, "PHOENIX_FAULT_BOOT_HANG=1", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := runGuest(t, r, tt.vmid, tt.idx, tt.env)
			if tt.cloudInit {
				if status := waitCloudInit(ctx, t, r, tt.vmid); !strings.Contains(status, "status: done") {
					t.Fatalf("cloud-init: %s", status)
				}
			} else {
				// Give a normal boot ample time to have started everything.
				if err := r.pool.Retry(func() error {
					return execErr(r.GuestExec(ctx, tt.vmid, "sh", "-c", "grep -q 'hanging forever' /var/log/phoenix-guest-init.log"))
				}); err != nil {
					t.Fatalf("boot-hang never reached: %v", err)
				}
				if res, _ := r.GuestExec(ctx, tt.vmid, "sh", "-c", "test -e /run/cloud-init/status.json || pgrep -x qemu-ga || pgrep -x sshd"); res.ExitCode == 0 {
					t.Errorf("a hung boot started something: %q", res.Stdout)
				}
			}
			if tt.name == "agent-kill-after" {
				// cloud-init takes seconds; the agent was killed 1 s after start.
				res, _ := r.GuestExec(ctx, tt.vmid, "grep", "-c", "qemu-ga killed", "/var/log/phoenix-guest-init.log")
				if strings.TrimSpace(res.Stdout) != "1" {
					t.Errorf("no kill logged: %q", res.Stdout)
				}
			}
			_, err := qga(r, tt.vmid, "guest-ping")
			if (err == nil) != tt.agent {
				t.Errorf("guest-ping: err %v, want agent answering = %v", err, tt.agent)
			}
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "22"), 3*time.Second)
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tt.ssh {
				t.Errorf("connect %s:22: err %v, want sshd listening = %v", ip, err, tt.ssh)
			}
		})
	}
}

// execErr folds a docker exec failure and a non-zero exit into one error.
func execErr(res ExecResult, err error) error {
	if err != nil {
		return err
	}
	return res.Err()
}

func TestGuestImageNFSStandIn(t *testing.T) {
	r := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const vmid = 8192
	runGuest(t, r, vmid, 92)
	waitCloudInit(ctx, t, r, vmid)

	fstab := fmt.Sprintf("%s:/export/data /mnt/data nfs defaults,auto,nofail 0 0", r.NodeIP())
	mustGuest(ctx, t, r, vmid, "mkdir -p /mnt/data && echo '"+fstab+"' >> /etc/fstab")
	if res, _ := r.GuestExec(ctx, vmid, "mount", "/mnt/data"); res.ExitCode != 32 || !strings.Contains(res.Stderr, "you might need a /sbin/mount.<type> helper program") {
		t.Fatalf("mount before nfs-common: exit %d, stderr %q; want exit 32 and mount's missing-helper text", res.ExitCode, res.Stderr)
	}
	// The real package, from Debian's mirror, with its postinst and no systemd.
	install := mustGuest(ctx, t, r, vmid, "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nfs-common 2>&1 | tail -3; dpkg -s nfs-common | grep '^Status'")
	if !strings.Contains(install, "Status: install ok installed") {
		t.Fatalf("apt-get install nfs-common:\n%s", install)
	}
	if got := mustGuest(ctx, t, r, vmid, "dpkg-divert --truename /sbin/mount.nfs; test -x /sbin/mount.nfs.distrib && echo distrib-ok"); got != "/sbin/mount.nfs.distrib\ndistrib-ok\n" {
		t.Errorf("diversion after install: %q", got)
	}
	mustGuest(ctx, t, r, vmid, "mount -a")
	if got := mustGuest(ctx, t, r, vmid, "findmnt -n -o TARGET /mnt/data; cat /mnt/data/hello.txt"); got != "/mnt/data\nexported by the rig node\n" {
		t.Errorf("after mount -a: %q", got)
	}
	// A write in the guest shows up in the node's export, as with NFS.
	mustGuest(ctx, t, r, vmid, "echo from-guest > /mnt/data/guest.txt")
	if res, err := r.NodeExec(ctx, "cat", "/export/data/guest.txt"); err != nil || res.Stdout != "from-guest\n" {
		t.Errorf("node sees %q, %v", res.Stdout, err)
	}
	if res, _ := r.GuestExec(ctx, vmid, "sh", "-c", "mkdir -p /mnt/nope && mount -t nfs "+r.NodeIP()+":/export/nope /mnt/nope"); res.ExitCode != 32 || !strings.Contains(res.Stderr, "access denied by server") {
		t.Errorf("mount of a missing export: exit %d, %q; want exit 32, access denied", res.ExitCode, res.Stderr)
	}
}

func TestGuestImagePowerButton(t *testing.T) {
	r := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const vmid = 8193
	runGuest(t, r, vmid, 93)
	waitCloudInit(ctx, t, r, vmid)
	if _, err := qga(r, vmid, "guest-shutdown"); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("guest-shutdown: %v", err)
	}
	err := r.pool.Retry(func() error {
		c, err := r.pool.Client.InspectContainerWithContext(r.GuestContainer(vmid), ctx)
		if err != nil {
			return err
		}
		if c.State.Running {
			return errors.New("still running")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("guest-shutdown did not power the container off: %v", err)
	}
}
