package rig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// teardown removes the containers named phoenix-rig-<id>-* (node, mirror and
// guests), pvesim's VM disks (images phoenix-rig-<id>-disk:*), the network
// phoenix-rig-<id> and dir. It goes on after an error so that one stuck
// piece does not leave the rest behind.
func teardown(ctx context.Context, pool *dockertest.Pool, id, dir string) error {
	if pool == nil || id == "" {
		return errors.New("rig not started")
	}
	cs, nets, errs := find(ctx, pool, id)
	for _, c := range cs {
		err := pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true, Context: ctx})
		if err != nil && !isNoSuch(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", strings.Join(c.Names, ","), err))
		}
	}
	disks, err := diskImages(ctx, pool, id)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ref := range disks {
		// The tag goes; an image also cached under another name stays.
		err := pool.Client.RemoveImageExtended(ref, dc.RemoveImageOptions{Force: true, Context: ctx})
		if err != nil && !errors.Is(err, dc.ErrNoSuchImage) {
			errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
		}
	}
	for _, n := range nets {
		if err := pool.Client.RemoveNetwork(n.ID); err != nil && !isNoSuch(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// find lists rig id's containers (phoenix-rig-<id>-*, running or not) and
// its network. Docker's name filters match substrings, so names are
// checked exactly here.
func find(ctx context.Context, pool *dockertest.Pool, id string) ([]dc.APIContainers, []dc.Network, []error) {
	var errs []error
	var mine []dc.APIContainers
	cs, err := pool.Client.ListContainers(dc.ListContainersOptions{All: true, Filters: map[string][]string{"name": {"phoenix-rig-" + id + "-"}}, Context: ctx})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, c := range cs {
		if hasNamePrefix(c.Names, "/phoenix-rig-"+id+"-") {
			mine = append(mine, c)
		}
	}
	var mineNets []dc.Network
	nets, err := pool.Client.FilteredListNetworks(dc.NetworkFilterOpts{"name": {"phoenix-rig-" + id: true}})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	}
	for _, n := range nets {
		if n.Name == "phoenix-rig-"+id {
			mineNets = append(mineNets, n)
		}
	}
	return mine, mineNets, errs
}

// diskImages lists the tags of pvesim's VM disks of rig id.
func diskImages(ctx context.Context, pool *dockertest.Pool, id string) ([]string, error) {
	repo := "phoenix-rig-" + id + "-disk"
	ims, err := pool.Client.ListImages(dc.ListImagesOptions{Filters: map[string][]string{"reference": {repo}}, Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var refs []string
	for _, im := range ims {
		for _, t := range im.RepoTags {
			if strings.HasPrefix(t, repo+":") {
				refs = append(refs, t)
			}
		}
	}
	return refs, nil
}

// Leftovers names what Docker still holds of the rig: its containers, VM
// disk images and network. Empty after Close.
func (r *Rig) Leftovers(ctx context.Context) ([]string, error) {
	cs, nets, errs := find(ctx, r.pool, r.ID)
	var left []string
	for _, c := range cs {
		left = append(left, "container "+strings.TrimPrefix(c.Names[0], "/"))
	}
	disks, err := diskImages(ctx, r.pool, r.ID)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ref := range disks {
		left = append(left, "image "+ref)
	}
	for _, n := range nets {
		left = append(left, "network "+n.Name)
	}
	return left, errors.Join(errs...)
}

func hasNamePrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// reapOrphans tears down rigs whose owner process is gone (a test binary
// killed before its cleanup ran). Rigs without an owner (the lab) are kept.
func reapOrphans(ctx context.Context, pool *dockertest.Pool, logf func(string, ...any)) {
	type orphan struct{ dir string }
	found := map[string]orphan{}
	consider := func(labels map[string]string) {
		pid, err := strconv.Atoi(labels[labelOwnerPID])
		if err != nil || labels[labelID] == "" || pid == os.Getpid() || alive(pid) {
			return
		}
		found[labels[labelID]] = orphan{dir: labels[labelDir]}
	}
	cs, err := pool.Client.ListContainers(dc.ListContainersOptions{All: true, Filters: map[string][]string{"label": {labelOwnerPID}}, Context: ctx})
	if err == nil {
		for _, c := range cs {
			consider(c.Labels)
		}
	}
	nets, err := pool.Client.FilteredListNetworks(dc.NetworkFilterOpts{"label": {labelOwnerPID: true}})
	if err == nil {
		for _, n := range nets {
			consider(n.Labels)
		}
	}
	for id, o := range found {
		dir := o.dir
		// Only ever delete a folder the harness itself made in the temp dir.
		if !strings.HasPrefix(filepath.Base(dir), "phoenix-rig-") || filepath.Dir(dir) != filepath.Clean(os.TempDir()) {
			dir = ""
		}
		logf("rig: removing leftover rig %s (owner process gone)", id)
		if err := teardown(ctx, pool, id, dir); err != nil {
			logf("rig: leftover rig %s: %v", id, err)
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
