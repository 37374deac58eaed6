package rig

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/phoenix-hv/phoenix/test/images"
)

func TestRecipeTagsFollowEveryFile(t *testing.T) {
	orig := fstest.MapFS{
		"base/packages":     {Data: []byte("openssh-server\ncloud-init\n")},
		"node/Dockerfile":   {Data: []byte("FROM x\n")},
		"guest/Dockerfile":  {Data: []byte("FROM x\n")},
		"guest/mount.nfs":   {Data: []byte("#!/bin/sh\n")},
		"guest/cloud.cfg":   {Data: []byte("a: 1\n")},
		"node/sshd.conf":    {Data: []byte("UseDNS no\n")},
		"base/Dockerfile.x": {Data: []byte("FROM debian\n")},
	}
	want, err := recipeTags(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range []string{want.Base, want.Node, want.Guest} {
		repo, tag, _ := strings.Cut(im, ":")
		if !strings.HasPrefix(repo, "phoenix-rig-") || len(tag) != 12 {
			t.Fatalf("tag %q: want phoenix-rig-*:<12 hex>", im)
		}
	}
	tests := []struct {
		name                     string
		file                     string
		data                     string
		base, node, guestChanges bool
	}{
		{"package list", "base/packages", "openssh-server\n", true, true, true},
		{"node file", "node/sshd.conf", "UseDNS yes\n", false, true, false},
		{"guest script", "guest/mount.nfs", "#!/bin/sh\nexit 32\n", false, false, true},
		{"new guest file", "guest/extra", "x", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := fstest.MapFS{}
			for k, v := range orig {
				changed[k] = v
			}
			changed[tt.file] = &fstest.MapFile{Data: []byte(tt.data)}
			got, err := recipeTags(changed)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Base != want.Base) != tt.base || (got.Node != want.Node) != tt.node || (got.Guest != want.Guest) != tt.guestChanges {
				t.Errorf("tags %+v, before %+v: want base/node/guest changed = %v/%v/%v", got, want, tt.base, tt.node, tt.guestChanges)
			}
		})
	}
	again, _ := recipeTags(orig)
	if again != want {
		t.Errorf("same recipe, different tags: %+v vs %+v", again, want)
	}
}

func TestPackagesAreTheContractList(t *testing.T) {
	pkgs, err := packages(images.Recipes())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range pkgs {
		have[p] = true
	}
	for _, p := range []string{"openssh-server", "qemu-guest-agent", "cloud-init", "sudo", "iproute2", "util-linux", "procps", "ca-certificates", "python3", "tini"} {
		if !have[p] {
			t.Errorf("base/packages lacks %s", p)
		}
	}
	if have["nfs-common"] {
		t.Error("base/packages has nfs-common: phoenix must install it itself")
	}
}

func TestTarFSKeepsScriptsExecutable(t *testing.T) {
	b, err := tarFS(fstest.MapFS{"init": {Data: []byte("#!/bin/sh\n")}, "cfg": {Data: []byte("x: 1\n")}})
	if err != nil {
		t.Fatal(err)
	}
	modes := tarModes(t, b)
	if modes["init"] != 0o755 || modes["cfg"] != 0o644 {
		t.Errorf("modes %v: want init 0755, cfg 0644", modes)
	}
}

func TestLockFileWaitsForTheHolderAndHonoursCtx(t *testing.T) {
	path := filepath.Join(t.TempDir(), "images.lock")
	unlock, err := lockFile(context.Background(), path, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	// A second locker (another test process in real life) waits...
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path, t.Logf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock while held: %v, want the ctx deadline", err)
	}
	// ...and gets the lock once the holder lets go.
	got := make(chan error, 1)
	go func() {
		u, err := lockFile(context.Background(), path, t.Logf)
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting locker never got the lock")
	}
}

func tarModes(t *testing.T, b []byte) map[string]int64 {
	t.Helper()
	modes := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return modes
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[h.Name] = h.Mode
	}
}
