package rig

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// ExecResult is what a command run through docker exec left behind.
type ExecResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Err is nil for exit 0, else an error carrying the exit code and stderr.
func (r ExecResult) Err() error {
	if r.ExitCode == 0 {
		return nil
	}
	return fmt.Errorf("exit %d: %s", r.ExitCode, strings.TrimSpace(r.Stderr+"\n"+tail(r.Stdout, 5)))
}

// connect returns a pool whose engine answers, or an error a person can act on.
func connect(ctx context.Context) (*dockertest.Pool, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Client.PingWithContext(pctx); err != nil {
		if _, lerr := exec.LookPath("dockerd"); lerr != nil {
			if _, serr := os.Stat("/var/run/docker.sock"); serr != nil {
				return nil, fmt.Errorf("Docker is not installed: install it with `apt-get install -y docker.io` (%v)", err)
			}
		}
		return nil, fmt.Errorf("Docker is not running: start it with `systemctl start docker` / `service docker start` (%v)", err)
	}
	return pool, nil
}

// dockerExec runs argv in container id and waits for it, bounded by ctx.
func dockerExec(ctx context.Context, pool *dockertest.Pool, id string, stdin []byte, argv ...string) (ExecResult, error) {
	ex, err := pool.Client.CreateExec(dc.CreateExecOptions{
		Container:    id,
		Cmd:          argv,
		AttachStdin:  stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Context:      ctx,
	})
	if err != nil {
		return ExecResult{}, fmt.Errorf("docker exec %s: %w", id, err)
	}
	var stdout, stderr bytes.Buffer
	opts := dc.StartExecOptions{OutputStream: &stdout, ErrorStream: &stderr}
	if stdin != nil {
		opts.InputStream = bytes.NewReader(stdin)
	}
	cw, err := pool.Client.StartExecNonBlocking(ex.ID, opts)
	if err != nil {
		return ExecResult{}, fmt.Errorf("docker exec %s: %w", id, err)
	}
	done := make(chan error, 1)
	go func() { done <- cw.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Closing the hijacked connection ends the wait; the process in the
		// container may go on, but this caller is released.
		_ = cw.Close()
		<-done
		return ExecResult{}, fmt.Errorf("docker exec %s %q: %w", id, strings.Join(argv, " "), ctx.Err())
	}
	if err != nil {
		return ExecResult{}, fmt.Errorf("docker exec %s: %w", id, err)
	}
	ins, err := pool.Client.InspectExec(ex.ID)
	if err != nil {
		return ExecResult{}, fmt.Errorf("docker exec %s: inspect: %w", id, err)
	}
	return ExecResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: ins.ExitCode}, nil
}

// uploadFile writes one file into a container through the archive API, which
// needs nothing inside the container and keeps the mode exact.
func uploadFile(ctx context.Context, pool *dockertest.Pool, id, file string, content []byte, mode fs.FileMode) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: path.Base(file), Mode: int64(mode.Perm()), Size: int64(len(content)), ModTime: time.Now()}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write(content); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	dir := path.Dir(file)
	if res, err := dockerExec(ctx, pool, id, nil, "mkdir", "-p", dir); err != nil {
		return err
	} else if err := res.Err(); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err := pool.Client.UploadToContainer(id, dc.UploadToContainerOptions{InputStream: &buf, Path: dir, Context: ctx}); err != nil {
		return fmt.Errorf("upload %s: %w", file, err)
	}
	return nil
}

// isNoSuch reports whether err says the container or network is already gone.
func isNoSuch(err error) bool {
	var nc *dc.NoSuchContainer
	var nn *dc.NoSuchNetwork
	return errors.As(err, &nc) || errors.As(err, &nn) || strings.Contains(err.Error(), "No such") || strings.Contains(err.Error(), "not found")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
