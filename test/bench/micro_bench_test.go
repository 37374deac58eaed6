package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/tasks/guest"
	"github.com/phoenix-hv/phoenix/tasks/pve"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

// originalConfig is the original project's phoenix_vm_configs.json.
const originalConfig = "../../inventory/testdata/original_vm_configs.json"

// qmConfig is `qm config` of a cloned cloud-init VM (reference format).
const qmConfig = `agent: enabled=1
boot: order=scsi0
cicustom: vendor=local:snippets/phoenix-8101-hostkey.yml
ciuser: phoenix
cores: 2
ide2: local-lvm:vm-8101-cloudinit,media=cdrom
ipconfig0: ip=10.210.7.101/24,gw=10.210.7.1
memory: 4096
meta: creation-qemu=8.1.5,ctime=1717000000
name: phoenix-test
net0: virtio=BC:24:11:81:01:01,bridge=vmbr0
ostype: l26
scsi0: local-lvm:vm-8101-disk-0,size=32G
scsihw: virtio-scsi-pci
serial0: socket
smbios1: uuid=5b0e8f1c-7d3a-4c55-9a41-2f6de0b98101
sshkeys: ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIPhoenixTestKeyOnly%20phoenix%40test
vga: serial0
vmgenid: 0b6e3c2a-1f4d-4e8b-9c7a-5d2e1f908101
`

// replay is a Runner that answers every command with one recorded Result.
type replay struct{ res transport.Result }

func (r replay) Run(context.Context, transport.Cmd) (transport.Result, error) { return r.res, nil }

// recorder runs commands with another Runner and keeps the last Result.
type recorder struct {
	transport.Runner
	last transport.Result
}

func (r *recorder) Run(ctx context.Context, c transport.Cmd) (transport.Result, error) {
	res, err := r.Runner.Run(ctx, c)
	r.last = res
	return res, err
}

// BenchmarkBatch100 is transport.Batch of 100 commands against output a real
// shell produced once: building the script and parsing 100 framed results.
func BenchmarkBatch100(b *testing.B) {
	ctx := context.Background()
	lines := make([]string, 100)
	for i := range lines {
		if i%10 == 9 {
			lines[i] = fmt.Sprintf("echo 'Configuration file nodes/pve/qemu-server/%d.conf does not exist' >&2; exit 2", 9000+i)
			continue
		}
		lines[i] = transport.Command("printf", "%s", qmConfig)
	}
	rec := &recorder{Runner: local.Shell{}}
	if _, err := transport.Batch(ctx, rec, lines); err != nil {
		b.Fatal(err)
	}
	r := replay{res: rec.last}
	b.SetBytes(int64(len(r.res.Stdout)))
	b.ReportAllocs()
	b.ResetTimer()
	var out []transport.Result
	for i := 0; i < b.N; i++ {
		var err error
		if out, err = transport.Batch(ctx, r, lines); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(out) != 100 || string(out[0].Stdout) != qmConfig || out[9].ExitCode != 2 {
		b.Fatalf("batch parsed %d results, first %q, tenth exit %d", len(out), out[0].Stdout, out[9].ExitCode)
	}
}

// fstab is a cloud image's /etc/fstab with two shares already in it.
const fstab = `# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
LABEL=cloudimg-rootfs	/	 ext4	discard,errors=remount-ro	0 1
LABEL=UEFI	/boot/efi	vfat	umask=0077	0 1
/swap.img	none	swap	sw	0	0
10.0.0.13:/quickOS/vm-persistent-data/1001 /mnt/persistent nfs defaults,auto,nofail,x-phoenix 0 0
10.0.0.13:/quickOS/shared /mnt/shared nfs defaults,auto,nofail,x-phoenix 0 0
`

// BenchmarkEditFstab is the NFS task's fstab edit: the converged case (line
// present) and the two that change the file.
func BenchmarkEditFstab(b *testing.B) {
	entry := func(path, opts string) guest.Entry {
		return guest.Entry{Source: "10.0.0.13:/quickOS/vm-persistent-data/1001", MountPoint: path, FSType: "nfs", Options: opts}
	}
	cases := []struct {
		name    string
		entry   guest.Entry
		changed bool
	}{
		{"converged", entry("/mnt/persistent", "defaults,auto,nofail"), false},
		{"replace", entry("/mnt/persistent", "defaults,auto,nofail,ro"), true},
		{"append", entry("/mnt/data", "defaults,auto,nofail"), true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			old := []byte(fstab)
			b.ReportAllocs()
			var changed bool
			var err error
			for i := 0; i < b.N; i++ {
				_, changed, err = guest.EditFstab(old, c.entry)
			}
			if err != nil || changed != c.changed {
				b.Fatalf("EditFstab changed=%v (%v), want %v", changed, err, c.changed)
			}
		})
	}
}

// BenchmarkLoadConfig is inventory.LoadConfig (read, JSON Schema, checks) of
// the original project's config (3 VMs) and of one grown to 100 VMs.
func BenchmarkLoadConfig(b *testing.B) {
	big := filepath.Join(b.TempDir(), "phoenix_vm_configs.json")
	if err := writeGrown(originalConfig, big, 100); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		path string
		vms  int
	}{{"original-3", originalConfig, 3}, {"grown-100", big, 100}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var cfg *inventory.Config
			for i := 0; i < b.N; i++ {
				var err error
				if cfg, err = inventory.LoadConfig(c.path); err != nil {
					b.Fatal(err)
				}
			}
			if len(cfg.VMs) != c.vms {
				b.Fatalf("loaded %d VMs, want %d", len(cfg.VMs), c.vms)
			}
		})
	}
}

// writeGrown writes src with VM 1001 copied until the file holds n VMs, each
// copy with its own vmid, name and address.
func writeGrown(src, dst string, n int) error {
	raw, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	vms := doc["vms"].([]any)
	var proto map[string]any
	for _, v := range vms {
		if vm := v.(map[string]any); vm["vmid"] == float64(1001) {
			proto = vm
		}
	}
	if proto == nil {
		return fmt.Errorf("%s: no vm 1001", src)
	}
	protoJSON, err := json.Marshal(proto)
	if err != nil {
		return err
	}
	for i := 0; len(vms) < n; i++ {
		var vm map[string]any
		if err := json.Unmarshal(protoJSON, &vm); err != nil {
			return err
		}
		id := 2000 + i
		vm["vmid"], vm["name"] = id, fmt.Sprintf("copy-%d", id)
		vm["network_config"].(map[string]any)["ip"] = fmt.Sprintf("10.0.%d.%d/16", 1+i/200, 10+i%200) // in the subnet of 1001's gw 10.0.0.1
		vms = append(vms, vm)
	}
	doc["vms"] = vms
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// BenchmarkRender is the create playbook rendered for VM 1001 of the
// original config (five features, one NFS share): what every run does
// before it touches a host.
func BenchmarkRender(b *testing.B) {
	cfg, err := inventory.LoadConfig(originalConfig)
	if err != nil {
		b.Fatal(err)
	}
	vm := cfg.Lookup(1001)
	reg := tasks.Registry{}
	pve.Register(reg)
	guest.Register(reg, playbooks.Feature)
	pb, err := playbooks.Load("create")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var steps []playbooks.ResolvedStep
	for i := 0; i < b.N; i++ {
		if steps, err = playbooks.Render(pb, vm, reg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := countRun(steps); n < 10 {
		var names bytes.Buffer
		for _, s := range steps {
			fmt.Fprintf(&names, "%s skipped=%v\n", s.Name, s.Skipped)
		}
		b.Fatalf("rendered %d steps to run, want the clone…snapshot chain with 5 features:\n%s", n, names.String())
	}
}

func countRun(steps []playbooks.ResolvedStep) int {
	n := 0
	for _, s := range steps {
		if !s.Skipped {
			n++
		}
	}
	return n
}
