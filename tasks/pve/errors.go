package pve

import (
	"errors"
	"regexp"
	"strings"

	"github.com/phoenix-hv/phoenix/transport"
)

// qm exit codes are not reliable (255, or an errno), so failures are told
// apart by the stderr texts of the reference catalogue.
var (
	reNotExist = regexp.MustCompile(`Configuration file '[^']*' does not exist|unable to find configuration file for VM \d+ on node '[^']*'`)
	reLocked   = regexp.MustCompile(`VM is locked \(([^)]*)\)`)
	reLockWait = regexp.MustCompile(`can't lock file '[^']*' - got timeout`)
	reRunning  = regexp.MustCompile(`VM \d+ already running`)
)

// stderrOf returns the remote stderr an error carries, "" if none.
func stderrOf(err error) string {
	var ee *transport.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// IsNotExist reports a qm failure because the VM (or a clone source) has no
// configuration file.
func IsNotExist(err error) bool { return reNotExist.MatchString(stderrOf(err)) }

// IsLocked reports a VM holding a persistent config lock (`VM is locked (backup)`).
func IsLocked(err error) bool { return reLocked.MatchString(stderrOf(err)) }

// LockName returns the lock a qm failure names ("backup"), "" if none.
func LockName(err error) string {
	if m := reLocked.FindStringSubmatch(stderrOf(err)); m != nil {
		return m[1]
	}
	return ""
}

// IsLockTimeout reports that qm could not take the short-lived flock in time:
// another operation on the VM was running. Worth retrying.
func IsLockTimeout(err error) bool { return reLockWait.MatchString(stderrOf(err)) }

// IsAlreadyRunning reports `qm start` on a running VM.
func IsAlreadyRunning(err error) bool { return reRunning.MatchString(stderrOf(err)) }

// IsShutdownTimeout reports a graceful shutdown that did not finish in time;
// the VM keeps running.
func IsShutdownTimeout(err error) bool {
	return strings.Contains(stderrOf(err), "VM quit/powerdown failed - got timeout")
}
