// Command benchlab starts and removes the rig that test/bench/compare.sh
// measures phoenix, Ansible and spot on. It is the lab (test/rig/cmd/lab)
// with a folder of the caller's choosing and one more file, lab.env: the
// rig's addresses, keys and container names as shell variables.
//
//	go run ./test/bench/cmd/benchlab up DIR [VMS]
//	go run ./test/bench/cmd/benchlab down DIR
//
// VMS (default 1) is how many VMs the config defines, all like the rig's
// VM 8101 (cloned from template 9000, one NFS share, one injected file):
// 8101, 8102, … at GuestIP(1), GuestIP(2), … lab.env lists them in VMIDS,
// GUEST_IPS and GUEST_CONTAINERS (space-separated, in the same order).
//
// Run it from the repository: the rig builds pvesim from the module root.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

func main() {
	vms := 1
	ok := len(os.Args) == 3 && (os.Args[1] == "up" || os.Args[1] == "down")
	if len(os.Args) == 4 && os.Args[1] == "up" {
		n, err := strconv.Atoi(os.Args[3])
		vms, ok = n, err == nil && n >= 1 && n <= maxVMs
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: benchlab up DIR [VMS (1..%d)] | benchlab down DIR\n", maxVMs)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	dir := os.Args[2]
	var err error
	if os.Args[1] == "up" {
		err = up(ctx, dir, vms)
	} else {
		err = down(ctx, dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchlab:", err)
		os.Exit(1)
	}
}

// maxVMs is what the rig's addresses allow (GuestIP) and the VMID range
// 8101… leaves below the template's 9000 with room to spare.
const maxVMs = 150

func up(ctx context.Context, dir string, vms int) error {
	r, err := rig.Start(ctx, rig.Options{
		Dir:        dir,
		Persistent: true,
		Log:        func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	write := func() error {
		if err := r.WriteInventory(filepath.Join(r.Dir, "inventory.yml")); err != nil {
			return err
		}
		if err := config(r, vms).Write(filepath.Join(r.Dir, "phoenix_vm_configs.json")); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(r.Dir, "lab.env"))
		if err != nil {
			return err
		}
		if err := writeEnv(f, r, vms); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return r.Save(filepath.Join(r.Dir, "rig.json"))
	}
	if err := write(); err != nil {
		if cerr := r.Close(); cerr != nil {
			err = fmt.Errorf("%w (and removing the rig: %v)", err, cerr)
		}
		return err
	}
	fmt.Fprintf(os.Stderr, "benchlab: rig %s is up in %s\n", r.ID, r.Dir)
	return nil
}

// config is the rig's config with vms VMs like its VM 8101.
func config(r *rig.Rig, vms int) rig.ConfigFile {
	c := r.VMConfig()
	base := c.VMs[len(c.VMs)-1]
	if base.VMID != rig.TestVMID {
		panic(fmt.Sprintf("benchlab: the rig's config ends with VM %d, want %d", base.VMID, rig.TestVMID))
	}
	for i := 2; i <= vms; i++ {
		vm := base
		vm.VMID = rig.TestVMID + i - 1
		vm.Name = fmt.Sprintf("%s-%d", base.Name, i)
		vm.NetworkConfig.IP = r.GuestIP(i) + "/" + strconv.Itoa(r.PrefixLen())
		c.VMs = append(c.VMs, vm)
	}
	return c
}

// writeEnv writes the rig as shell variables, each value single-quoted.
func writeEnv(w io.Writer, r *rig.Rig, vms int) error {
	var ids, ips, containers []string
	for i := 1; i <= vms; i++ {
		id := rig.TestVMID + i - 1
		ids = append(ids, strconv.Itoa(id))
		ips = append(ips, r.GuestIP(i))
		containers = append(containers, r.GuestContainer(id))
	}
	vars := []struct{ k, v string }{
		{"RIG_ID", r.ID},
		{"RIG_DIR", r.Dir},
		{"NODE_HOST", r.NodeHost},
		{"NODE_PORT", fmt.Sprint(r.NodePort)},
		{"NODE_IP", r.NodeIP()},
		{"NODE_KEY", r.NodeKey},
		{"NODE_CONTAINER", r.NodeContainer()},
		{"KNOWN_HOSTS", r.KnownHosts},
		{"VMID", fmt.Sprint(rig.TestVMID)},
		{"GUEST_IP", r.GuestIP(1)},
		{"GUEST_PREFIX", fmt.Sprint(r.PrefixLen())},
		{"GATEWAY", r.Gateway()},
		{"GUEST_USER", rig.GuestUser},
		{"GUEST_KEY", r.GuestKey},
		{"GUEST_KNOWN_HOSTS", r.GuestKnownHosts},
		{"GUEST_CONTAINER", r.GuestContainer(rig.TestVMID)},
		{"INJECT_SOURCE", rig.InjectSource},
		{"VMIDS", strings.Join(ids, " ")},
		{"GUEST_IPS", strings.Join(ips, " ")},
		{"GUEST_CONTAINERS", strings.Join(containers, " ")},
	}
	for _, kv := range vars {
		if _, err := fmt.Fprintf(w, "%s='%s'\n", kv.k, strings.ReplaceAll(kv.v, "'", `'\''`)); err != nil {
			return err
		}
	}
	return nil
}

func down(ctx context.Context, dir string) error {
	r, err := rig.Attach(ctx, filepath.Join(dir, "rig.json"))
	if err != nil {
		return err
	}
	if err := r.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchlab: rig %s removed\n", r.ID)
	return nil
}
