package rig

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// The rig's cloud image: what a vendor's cloud image is to a real node, a
// file served over HTTP that the node downloads and imports as a VM's disk.
// It is the guest image's root file system (docker export of a container
// that never ran, so no cloud-init state, no SSH host keys) as a gzip'ed
// tar, pvesim's disk image format (it stands for qcow2), plus a marker file
// that the guest image itself lacks: a VM that has it runs these bytes.

// CloudImageName is the served file's name.
const CloudImageName = "phoenix-rig-debian-12-amd64.qcow2"

// CloudImageMarker is the file only the cloud image has; its content names
// the guest image it was made from.
const CloudImageMarker = "/etc/phoenix-rig-cloud-image"

// CloudImage is a cloud image file on this machine.
type CloudImage struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// EnsureCloudImage makes the cloud image of guestImage once and keeps it in
// the temp dir (phoenix-rig-cloudimg-<tag>/), like the images it is made
// from; the images lock keeps two processes from making it at once.
func EnsureCloudImage(ctx context.Context, pool *dockertest.Pool, guestImage string, logf func(string, ...any)) (CloudImage, error) {
	_, tag, _ := strings.Cut(guestImage, ":")
	dir := filepath.Join(os.TempDir(), "phoenix-rig-cloudimg-"+tag)
	im := CloudImage{Path: filepath.Join(dir, CloudImageName)}
	read := func() bool {
		sum, err := os.ReadFile(im.Path + ".sha256")
		if _, serr := os.Stat(im.Path); err != nil || serr != nil || len(strings.TrimSpace(string(sum))) != 64 {
			return false
		}
		im.SHA256 = strings.TrimSpace(string(sum))
		return true
	}
	if read() {
		return im, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "phoenix-rig-images.lock"), logf)
	if err != nil {
		return CloudImage{}, err
	}
	defer unlock()
	if read() {
		return im, nil
	}
	start := time.Now()
	logf("rig: making cloud image %s from %s", im.Path, guestImage)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return CloudImage{}, err
	}
	if im.SHA256, err = exportRootfs(ctx, pool, guestImage, im.Path); err != nil {
		return CloudImage{}, fmt.Errorf("cloud image from %s: %w", guestImage, err)
	}
	if err := os.WriteFile(im.Path+".sha256", []byte(im.SHA256+"\n"), 0o644); err != nil {
		return CloudImage{}, err
	}
	logf("rig: made cloud image in %s", time.Since(start).Round(100*time.Millisecond))
	return im, nil
}

// exportRootfs writes image's file system plus CloudImageMarker as a
// gzip'ed tar to out (temp file + rename) and returns its sha256.
func exportRootfs(ctx context.Context, pool *dockertest.Pool, image, out string) (string, error) {
	c, err := pool.Client.CreateContainer(dc.CreateContainerOptions{
		Config:  &dc.Config{Image: image, Labels: map[string]string{"phoenix-rig.cloud-image": image}},
		Context: ctx,
	})
	if err != nil {
		return "", err
	}
	defer pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: c.ID, Force: true, Context: context.Background()})
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(tmp, sum), gzip.BestSpeed)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(pool.Client.ExportContainer(dc.ExportContainerOptions{ID: c.ID, OutputStream: pw, Context: ctx}))
	}()
	err = copyWithMarker(tar.NewWriter(zw), tar.NewReader(pr), "phoenix-rig cloud image, made from "+image+"\n")
	pr.CloseWithError(err)
	if err == nil {
		err = zw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// copyWithMarker copies the archive and adds CloudImageMarker.
func copyWithMarker(tw *tar.Writer, tr *tar.Reader, marker string) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	h := &tar.Header{Name: strings.TrimPrefix(CloudImageMarker, "/"), Mode: 0o644, Size: int64(len(marker)), ModTime: time.Now(), Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, marker); err != nil {
		return err
	}
	return tw.Close()
}

// startMirror serves <dir>/mirror (the cloud image and a SHA256SUMS file,
// as vendors publish them) over HTTP at MirrorIP, port 80, from a container
// of the node image: the image server of the rig network.
func (r *Rig) startMirror(ctx context.Context, im CloudImage, labels map[string]string) error {
	dir := filepath.Join(r.Dir, "mirror")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(dir, CloudImageName)
	if err := os.Link(im.Path, dst); err != nil {
		if err := copyFile(im.Path, dst); err != nil {
			return err
		}
	}
	sums := fmt.Sprintf("%s  %s\n", im.SHA256, CloudImageName)
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums), 0o644); err != nil {
		return err
	}
	c, err := r.pool.Client.CreateContainer(dc.CreateContainerOptions{
		Name: r.MirrorContainer(),
		Config: &dc.Config{
			Image:      r.Images.Node,
			Labels:     labels,
			Entrypoint: []string{"/usr/bin/tini", "--"},
			Cmd:        []string{"python3", "-m", "http.server", "80", "--bind", r.MirrorIP(), "--directory", "/srv/mirror"},
		},
		HostConfig: &dc.HostConfig{Binds: []string{dir + ":/srv/mirror:ro"}},
		NetworkingConfig: &dc.NetworkingConfig{EndpointsConfig: map[string]*dc.EndpointConfig{
			r.Network: {IPAMConfig: &dc.EndpointIPAMConfig{IPv4Address: r.MirrorIP()}},
		}},
		Context: ctx,
	})
	if err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	if err := r.pool.Client.StartContainerWithContext(c.ID, nil, ctx); err != nil {
		return fmt.Errorf("start mirror: %w", err)
	}
	r.CloudImageURL = "http://" + r.MirrorIP() + "/" + CloudImageName
	r.CloudImageSHA256 = im.SHA256
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// MirrorContainer is the image server's container name.
func (r *Rig) MirrorContainer() string { return "phoenix-rig-" + r.ID + "-mirror" }

// MirrorIP is the image server's address on the rig network (.3).
func (r *Rig) MirrorIP() string { return r.host(3) }

// buildTemplate makes template 9000 on the node the way a person (or
// phoenix) does it, through pvesim: download-url with the checksum, qm
// create with the image imported as its boot disk, qm resize, qm template.
func (r *Rig) buildTemplate(ctx context.Context) error {
	vmid := fmt.Sprint(TemplateVMID)
	steps := [][]string{
		{"pvesh", "create", "/nodes/" + PVENode + "/storage/local/download-url", "--url", r.CloudImageURL,
			"--filename", CloudImageName, "--content", "import", "--checksum", r.CloudImageSHA256, "--checksum-algorithm", "sha256"},
		{"qm", "create", vmid, "--name", "debian-12-cloud", "--ostype", "l26", "--memory", "2048", "--cores", "2",
			"--net0", "virtio,bridge=vmbr0", "--scsihw", "virtio-scsi-pci",
			"--scsi0", "local-lvm:0,import-from=/var/lib/vz/import/" + CloudImageName,
			"--ide2", "local-lvm:cloudinit", "--boot", "order=scsi0", "--serial0", "socket", "--vga", "serial0",
			"--agent", "enabled=1", "--ciupgrade", "0"},
		{"qm", "resize", vmid, "scsi0", "32G"},
		{"qm", "template", vmid},
	}
	for _, argv := range steps {
		res, err := r.NodeExec(ctx, argv...)
		if err == nil && res.ExitCode == 0 && strings.TrimSpace(res.Stderr) != "" {
			// pvesh download-url, qm resize and qm template exit 0 on a failed task.
			err = fmt.Errorf("stderr: %s", strings.TrimSpace(res.Stderr))
		} else if err == nil {
			err = res.Err()
		}
		if err != nil {
			return fmt.Errorf("template %d: %s: %w", TemplateVMID, strings.Join(argv[:2], " "), err)
		}
	}
	return nil
}
