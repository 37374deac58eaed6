package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

// Two runs on one VM at the same time would interleave their steps (two
// clones racing, one fstab edited twice). So a run that changes a VM holds
// a lock on its node for as long as it works on it, and a second run is
// refused with the holder's name.
//
// The lock is an flock on /run/lock/phoenix/vm-VMID.lock held by one remote
// bash per node and run, the holder: it reads "lock ID WHO" and "unlock ID"
// lines on stdin and keeps each lock as an open file descriptor. The lock
// therefore lives exactly as long as that process: when the run ends its
// stdin is closed; when phoenix dies or the connection drops, sshd closes
// the pipe and the read ends. No stale lock outlives a run, there is
// nothing to clean up, and Proxmox's own lock-VMID.conf, which every qm
// command takes briefly, is left alone. One holder per node, not one
// session per VM: sshd allows 10 sessions per connection (MaxSessions), and
// --forks VMs each holding one would leave none for the work.

// runLockDir is where the holder keeps its lock files (tmpfs: nothing
// survives a reboot, and nothing needs to).
const runLockDir = "/run/lock/phoenix"

// runLockWait bounds one lock request's answer.
const runLockWait = 30 * time.Second

// holderScript is the holder. Lock files stay (like qm's); each VM's
// holder's name is in vm-ID.owner while held.
const holderScript = `d=$1; mkdir -p -m 0700 "$d" || exit 125; declare -A fd
while IFS=' ' read -r op id who; do
  case $op in
  lock)
    exec {f}>>"$d/vm-$id.lock" || { echo "error $id cannot open $d/vm-$id.lock"; continue; }
    if flock -n "$f"; then printf '%s\n' "$who" >"$d/vm-$id.owner"; fd[$id]=$f; echo "held $id"
    else exec {f}>&-; echo "busy $id $(head -c 300 "$d/vm-$id.owner" 2>/dev/null)"; fi;;
  unlock)
    if [ -n "${fd[$id]-}" ]; then f=${fd[$id]}; unset "fd[$id]"; rm -f "$d/vm-$id.owner"; exec {f}>&-; fi
    echo "unlocked $id";;
  esac
done`

// runLocks is the holder on one node, started on the first lock.
type runLocks struct {
	node  transport.Runner
	where string // node name, for errors
	dir   string

	mu      sync.Mutex // one request at a time
	in      *io.PipeWriter
	replies chan string
	ended   chan struct{} // the holder exited; err says why
	err     error
}

func newRunLocks(node transport.Runner, where, dir string) *runLocks {
	return &runLocks{node: node, where: where, dir: dir}
}

// start runs the holder. Its command outlives ctx's cancellation: an
// interrupted run keeps its VMs until it has finished stopping.
func (l *runLocks) start(ctx context.Context) {
	pr, pw := io.Pipe()
	l.in, l.replies, l.ended = pw, make(chan string, 4), make(chan struct{})
	out := &lineWriter{emit: func(line string) { l.replies <- line }}
	line := transport.Command("bash", "-c", holderScript, "phoenix-run-lock", l.dir)
	go func() {
		_, err := l.node.Run(context.WithoutCancel(ctx), transport.Cmd{Line: line, Stdin: pr, Stdout: out})
		pr.CloseWithError(io.ErrClosedPipe)
		if err == nil {
			err = errors.New("it ended")
		}
		l.err = err
		close(l.ended)
	}()
}

// lock takes vmid's lock for this run, or says who holds it.
func (l *runLocks) lock(ctx context.Context, vmid int, who string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.in == nil {
		l.start(ctx)
	}
	word, holder, err := l.request(ctx, fmt.Sprintf("lock %d %s", vmid, who), vmid)
	switch {
	case err != nil:
		return fmt.Errorf("run lock on node %s: %w", l.where, err)
	case word == "held":
		return nil
	case word == "busy":
		if holder == "" {
			holder = "holder unknown"
		}
		return fmt.Errorf("another phoenix run is working on this VM (%s); wait for it to end", holder)
	}
	return fmt.Errorf("run lock on node %s: %s %s", l.where, word, holder)
}

// unlock releases vmid; a holder that is gone holds nothing.
func (l *runLocks) unlock(vmid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.request(context.Background(), fmt.Sprintf("unlock %d", vmid), vmid)
}

// request sends one line to the holder and returns its answer about vmid:
// its first word and the rest.
func (l *runLocks) request(ctx context.Context, line string, vmid int) (word, rest string, err error) {
	wait := time.NewTimer(runLockWait)
	defer wait.Stop()
	// The pipe hands the line over only once the holder's session reads.
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(l.in, line+"\n")
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil {
			return "", "", l.why(err)
		}
	case <-l.ended:
		return "", "", l.why(nil)
	case <-wait.C:
		return "", "", fmt.Errorf("the lock holder did not start within %s", runLockWait)
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
	select {
	case r := <-l.replies:
		word, rest, _ := strings.Cut(r, " ")
		id, rest, _ := strings.Cut(rest, " ")
		if id != strconv.Itoa(vmid) {
			return "", "", fmt.Errorf("unexpected answer %q", r)
		}
		return word, rest, nil
	case <-l.ended:
		return "", "", l.why(nil)
	case <-wait.C:
		return "", "", fmt.Errorf("no answer within %s", runLockWait)
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

// why is the holder's own error once it ended, else err.
func (l *runLocks) why(err error) error {
	select {
	case <-l.ended:
		return fmt.Errorf("the lock holder stopped: %w", l.err)
	default:
		return err
	}
}

// close ends the holder, releasing every lock, and waits a little for it.
func (l *runLocks) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.in == nil {
		return
	}
	l.in.Close()
	select {
	case <-l.ended:
	case <-time.After(5 * time.Second): // closing the connection ends it
	}
}

// lockOwner names this run for a person who finds the VM locked:
// "alice@laptop pid 4242 since 2026-12-01T10:00:00Z". Only characters that
// cannot break the holder's line protocol.
func lockOwner(now time.Time) string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	s := fmt.Sprintf("%s@%s pid %d since %s", name, host, os.Getpid(), now.UTC().Format(time.RFC3339))
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '@' || r == '.' || r == ':' || r == '-' || r == '_' ||
			'0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
}
