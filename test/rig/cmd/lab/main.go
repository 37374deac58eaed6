// Command lab starts the phoenix test rig for a person and keeps it running
// until `lab down`: a bare simulated Proxmox node reachable over SSH on
// 127.0.0.1, an image mirror on the rig network serving a cloud image, an
// inventory, and a VM config for template 9000 (built from that image) and
// VM 8101 cloned from it. With LAB_NODES=2 (or 3) the node is a cluster of
// that many (pve1, pve2, …): the inventory lists them all, and the config
// puts the template and 8101 on pve1 and 8102 on pve2.
//
//	go run ./test/rig/cmd/lab up     # or: make lab-up; LAB_NODES=2 make lab-up
//	go run ./test/rig/cmd/lab info
//	go run ./test/rig/cmd/lab down   # or: make lab-down
//	go run ./test/rig/cmd/lab tags   # the rig's image tags (base, node, guest), one a line
//
// Everything lives in .lab/ of the working directory (the repository root);
// .lab/rig.json is how a later `lab down` finds the containers again.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

// defaultDir is where the lab lives (gitignored); tests use a temp dir.
const defaultDir = ".lab"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: lab up|info|down|tags")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()

	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Stdout, defaultDir)
	case "info":
		err = info(ctx, os.Stdout, defaultDir)
	case "down":
		err = down(ctx, os.Stdout, defaultDir)
	case "tags":
		var im rig.Images
		if im, err = rig.Tags(); err == nil {
			fmt.Printf("%s\n%s\n%s\n", im.Base, im.Node, im.Guest)
		}
	default:
		err = fmt.Errorf("unknown command %q: want up, info, down or tags", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func statePath(dir string) string { return filepath.Join(dir, "rig.json") }

func up(ctx context.Context, w io.Writer, dir string) error {
	if r, err := rig.Attach(ctx, statePath(dir)); err == nil {
		if _, err := r.NodeExec(ctx, "true"); err == nil {
			fmt.Fprintf(w, "lab %s is up already\n", r.ID)
			return printNext(w, r)
		}
		return fmt.Errorf("%s names rig %s, which is not running: run `lab down` first", statePath(dir), r.ID)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists without a rig.json: remove it first", dir)
	}
	nodes, err := labNodes()
	if err != nil {
		return err
	}
	r, err := rig.Start(ctx, rig.Options{
		Dir:        dir,
		Persistent: true,
		BareNode:   true,
		Nodes:      nodes,
		Log:        func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	if err := write(r, dir); err != nil {
		return errors.Join(err, r.Close())
	}
	fmt.Fprintf(w, "lab %s is up: node %s (ssh root, key %s)\n", r.ID, r.NodeAddr(), rel(r.NodeKey))
	return printNext(w, r)
}

// labNodes is LAB_NODES: 1 (the default) to 3.
func labNodes() (int, error) {
	v := os.Getenv("LAB_NODES")
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 3 {
		return 0, fmt.Errorf("LAB_NODES=%q: want 1, 2 or 3", v)
	}
	return n, nil
}

// write puts the lab's files next to the rig's keys and known_hosts.
func write(r *rig.Rig, dir string) error {
	if err := r.WriteInventory(filepath.Join(dir, "inventory.yml")); err != nil {
		return err
	}
	if err := r.LabConfig().Write(filepath.Join(dir, "phoenix_vm_configs.json")); err != nil {
		return err
	}
	return r.Save(statePath(dir))
}

func info(ctx context.Context, w io.Writer, dir string) error {
	r, err := rig.Attach(ctx, statePath(dir))
	if err != nil {
		return fmt.Errorf("no lab is up (%w)", err)
	}
	fmt.Fprintf(w, "lab %s: node %s, network %s (%s), folder %s\n", r.ID, r.NodeAddr(), r.Network, r.Subnet, r.Dir)
	for _, n := range r.Cluster {
		fmt.Fprintf(w, "  cluster node %s: ssh 127.0.0.1:%d, %s\n", n.Name, n.Port, n.IP)
	}
	return printNext(w, r)
}

func printNext(w io.Writer, r *rig.Rig) error {
	vm := fmt.Sprint(rig.TestVMID)
	if len(r.Cluster) > 1 {
		fmt.Fprintf(w, "\nA cluster of %d nodes sharing /etc/pve (%s). Template %d and VM %d go on %s (storage %s), VM %d on %s.\n",
			len(r.Cluster), rel(filepath.Join(r.Dir, "pve")), rig.TemplateVMID, rig.TestVMID, r.Cluster[0].Name, rig.SharedStorage, rig.ClusterVMID, r.Cluster[1].Name)
	}
	_, err := fmt.Fprintf(w, `
The node has no VMs. %s defines template %d, built from the cloud image
%s (sha256 %s), and VM %s cloned from it (NFS share, file injection, firewall).
Next:
  ./bin/phoenix run playbooks/create.yml --all --config .lab/phoenix_vm_configs.json --inventory .lab/inventory.yml
Look inside:
  ./bin/phoenix exec %s --config .lab/phoenix_vm_configs.json --inventory .lab/inventory.yml -- findmnt
  docker exec -it %s bash
  ssh -i %s -o UserKnownHostsFile=%s -p %d root@%s qm list
Remove it all:
  make lab-down
`, ".lab/phoenix_vm_configs.json", rig.TemplateVMID, r.CloudImageURL, r.CloudImageSHA256, vm, vm,
		r.GuestContainer(rig.TestVMID), rel(r.NodeKey), rel(r.KnownHosts), r.NodePort, r.NodeHost)
	return err
}

func down(ctx context.Context, w io.Writer, dir string) error {
	r, err := rig.Attach(ctx, statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(w, "no lab is up")
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.Close(); err != nil {
		return err
	}
	fmt.Fprintf(w, "lab %s removed (containers, network, %s)\n", r.ID, dir)
	return nil
}

// rel shows a path relative to the working directory when it is below it.
func rel(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !filepath.IsAbs(r) && r != ".." && len(r) < len(p) {
		return r
	}
	return p
}
