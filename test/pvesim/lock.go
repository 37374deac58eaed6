package pvesim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// flock is a held lock on /var/lock/qemu-server/lock-VMID.conf.
type flock struct{ f *os.File }

func (l *flock) unlock() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// lockPath is the lock file's path as Proxmox prints it.
func lockPath(vmid int) string {
	return fmt.Sprintf("/var/lock/qemu-server/lock-%d.conf", vmid)
}

// lock takes the VM's exclusive flock like PVE::Tools::lock_file_full:
// the file is opened for append, created if missing and never removed;
// while waiting "trying to acquire lock..." goes to progress, then " OK".
func (c *call) lock(vmid int, wait time.Duration, progress io.Writer) (*flock, error) {
	return c.flock(vmid, wait, syscall.LOCK_EX, progress)
}

// lockShared takes the flock shared (clone of a stopped source).
func (c *call) lockShared(vmid int, wait time.Duration, progress io.Writer) (*flock, error) {
	return c.flock(vmid, wait, syscall.LOCK_SH, progress)
}

func (c *call) flock(vmid int, wait time.Duration, mode int, progress io.Writer) (*flock, error) {
	path := c.path(lockPath(vmid))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("can't open lock file '%s' - %w", lockPath(vmid), err)
	}
	try := func() (bool, error) {
		err := syscall.Flock(int(f.Fd()), mode|syscall.LOCK_NB)
		if err == nil {
			return true, nil
		}
		if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR) {
			return false, nil
		}
		return false, err
	}
	ok, err := try()
	if err != nil {
		f.Close()
		return nil, err
	}
	if ok {
		return &flock{f: f}, nil
	}
	fmt.Fprint(progress, "trying to acquire lock...")
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if err := sleep(c.ctx, 50*time.Millisecond); err != nil {
			f.Close()
			return nil, err
		}
		if ok, err = try(); err != nil {
			f.Close()
			return nil, err
		}
		if ok {
			fmt.Fprintln(progress, " OK")
			return &flock{f: f}, nil
		}
	}
	f.Close()
	return nil, errorf("can't lock file '%s' - got timeout", lockPath(vmid))
}

// withLock runs fn under the VM's exclusive flock (10 s wait).
func (c *call) withLock(vmid int, progress io.Writer, fn func() error) error {
	l, err := c.lock(vmid, c.LockWait, progress)
	if err != nil {
		return err
	}
	defer l.unlock()
	return fn()
}

// tryFlock takes an exclusive flock on f without waiting.
func tryFlock(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

func unlockFile(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
