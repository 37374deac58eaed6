package rig

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"

	"github.com/phoenix-hv/phoenix/test/images"
)

// Where and how the base rootfs comes from when no debian:bookworm image exists.
const (
	suite   = "bookworm"
	mirror  = "http://deb.debian.org/debian"
	variant = "minbase"
)

// Images are the tags of the rig's three images.
type Images struct {
	Base  string // phoenix-rig-base:<hash12>
	Node  string // phoenix-rig-node:<hash12>
	Guest string // phoenix-rig-guest:<hash12>
}

// recipeTags computes the tags from the recipe files alone: the base tag
// hashes its package list and files, the node and guest tags hash the base tag
// and their own build context, so a base change rebuilds both.
func recipeTags(recipes fs.FS) (Images, error) {
	base, err := hashTree(recipes, "base", "debootstrap", suite, mirror, variant)
	if err != nil {
		return Images{}, err
	}
	im := Images{Base: "phoenix-rig-base:" + base}
	node, err := hashTree(recipes, "node", im.Base)
	if err != nil {
		return Images{}, err
	}
	guest, err := hashTree(recipes, "guest", im.Base)
	if err != nil {
		return Images{}, err
	}
	im.Node = "phoenix-rig-node:" + node
	im.Guest = "phoenix-rig-guest:" + guest
	return im, nil
}

// hashTree hashes the extra words and every file below dir (name, mode and
// content), and returns the first 12 hex digits.
func hashTree(fsys fs.FS, dir string, extra ...string) (string, error) {
	h := sha256.New()
	for _, e := range extra {
		fmt.Fprintf(h, "%s\x00", e)
	}
	var names []string
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", dir, err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// packages reads base/packages: one package a line, # comments.
func packages(recipes fs.FS) ([]string, error) {
	b, err := fs.ReadFile(recipes, "base/packages")
	if err != nil {
		return nil, err
	}
	var pkgs []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			pkgs = append(pkgs, line)
		}
	}
	return pkgs, sc.Err()
}

// Tags returns the tags the current recipes build, without building or
// contacting Docker (the set-up script asks whether the base exists).
func Tags() (Images, error) { return recipeTags(images.Recipes()) }

// EnsureImages builds whichever of the three images does not exist yet and
// returns their tags. A file lock keeps two test processes from building the
// same images at once; the second one finds them built.
func EnsureImages(ctx context.Context, pool *dockertest.Pool, logf func(string, ...any)) (Images, error) {
	im, err := recipeTags(images.Recipes())
	if err != nil {
		return Images{}, err
	}
	if have(pool, im.Base) && have(pool, im.Node) && have(pool, im.Guest) {
		return im, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "phoenix-rig-images.lock"), logf)
	if err != nil {
		return Images{}, err
	}
	defer unlock()

	steps := []struct {
		tag   string
		build func(context.Context, *dockertest.Pool, Images) error
	}{
		{im.Base, buildBase},
		{im.Node, func(ctx context.Context, p *dockertest.Pool, im Images) error {
			return buildFrom(ctx, p, "node", im.Node, im.Base)
		}},
		{im.Guest, func(ctx context.Context, p *dockertest.Pool, im Images) error {
			return buildFrom(ctx, p, "guest", im.Guest, im.Base)
		}},
	}
	for _, s := range steps {
		if have(pool, s.tag) {
			continue
		}
		start := time.Now()
		logf("rig: building image %s", s.tag)
		if err := s.build(ctx, pool, im); err != nil {
			return Images{}, fmt.Errorf("build image %s: %w", s.tag, err)
		}
		logf("rig: built image %s in %s", s.tag, time.Since(start).Round(100*time.Millisecond))
	}
	return im, nil
}

func have(pool *dockertest.Pool, tag string) bool {
	_, err := pool.Client.InspectImage(tag)
	return err == nil
}

// lockFile takes an exclusive flock on path, polling so that ctx bounds the wait.
func lockFile(ctx context.Context, path string, logf func(string, ...any)) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("image lock: %w", err)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	waiting := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("image lock %s: %w", path, err)
		}
		if !waiting {
			logf("rig: waiting for another process building the images (%s)", path)
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("image lock %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// buildBase makes phoenix-rig-base: from a local debian:bookworm image when
// there is one (nothing can be pulled), else from a debootstrap rootfs.
func buildBase(ctx context.Context, pool *dockertest.Pool, im Images) error {
	recipes := images.Recipes()
	if have(pool, "debian:bookworm") {
		return buildContext(ctx, pool, recipes, "base", "Dockerfile.debian", im.Base, nil)
	}
	pkgs, err := packages(recipes)
	if err != nil {
		return err
	}
	debootstrap, err := exec.LookPath("debootstrap")
	if err != nil {
		return errors.New("debootstrap is not installed: `apt-get install -y debootstrap` (no debian:bookworm image exists to build from)")
	}
	dir, err := os.MkdirTemp("", "phoenix-rig-rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")

	bctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, debootstrap, "--variant="+variant, "--include="+strings.Join(pkgs, ","), suite, root, mirror)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap: %w: %s", err, tail(out.String(), 15))
	}
	// Host keys are made per container (cloud-init) or per node image; apt
	// lists are left out as on a cloud image, so installs start with an update.
	for _, glob := range []string{"etc/ssh/ssh_host_*", "var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return err
			}
		}
	}
	return importRootfs(bctx, pool, root, im.Base)
}

// importRootfs streams `tar -C root -c .` into the engine's image import.
func importRootfs(ctx context.Context, pool *dockertest.Pool, root, tag string) error {
	repo, t, _ := strings.Cut(tag, ":")
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", root, "-cf", "-", ".")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	ierr := pool.Client.ImportImage(dc.ImportImageOptions{
		Repository: repo, Tag: t, Source: "-", InputStream: stdout, OutputStream: io.Discard, Context: ctx,
	})
	werr := cmd.Wait()
	if ierr != nil {
		return fmt.Errorf("docker import: %w", ierr)
	}
	if werr != nil {
		return fmt.Errorf("tar: %w: %s", werr, tail(stderr.String(), 5))
	}
	return nil
}

// buildFrom builds recipes/dir FROM base with the classic builder.
func buildFrom(ctx context.Context, pool *dockertest.Pool, dir, tag, base string) error {
	return buildContext(ctx, pool, images.Recipes(), dir, "Dockerfile", tag, []dc.BuildArg{{Name: "BASE", Value: base}})
}

func buildContext(ctx context.Context, pool *dockertest.Pool, recipes fs.FS, dir, dockerfile, tag string, args []dc.BuildArg) error {
	sub, err := fs.Sub(recipes, dir)
	if err != nil {
		return err
	}
	tarball, err := tarFS(sub)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err = pool.Client.BuildImage(dc.BuildImageOptions{
		Name:                tag,
		Dockerfile:          dockerfile,
		InputStream:         bytes.NewReader(tarball),
		OutputStream:        &out,
		BuildArgs:           args,
		RmTmpContainer:      true,
		ForceRmTmpContainer: true,
		Version:             "1",
		Labels:              map[string]string{"phoenix-rig.recipe": tag},
		Context:             bctx,
	})
	if err != nil {
		return fmt.Errorf("docker build: %w: %s", err, tail(out.String(), 15))
	}
	return nil
}

// tarFS packs a build context; scripts keep their executable bit.
func tarFS(fsys fs.FS) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if bytes.HasPrefix(b, []byte("#!")) {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: mode, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
