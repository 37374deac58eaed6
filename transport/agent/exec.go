package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/qga"
)

// MaxStdin is the most qm guest exec --pass-stdin passes (1 MiB − 1 B).
const MaxStdin = 1<<20 - 1

// pollLoop runs on the node: it polls exec-status for pid $2 of VM $1 until
// the process has exited and prints the final status object. It polls every
// 0.1 s for the first second (most commands take well under one, and a
// doubling schedule made a 0.31 s command wait until 0.8 s), then every
// 0.25 s up to 3 s, then once a second (each qm call costs the node a Perl
// start-up, which itself slows the first polls down on a real node). A
// failing qm ends the loop with qm's exit status and stderr; the caller
// bounds it with timeout(1).
const pollLoop = `n=0; while :; do s=$(qm guest exec-status "$1" "$2") || exit; ` +
	`if printf '%s\n' "$s" | grep -q '"exited" *: *1'; then printf '%s\n' "$s"; exit 0; fi; ` +
	`n=$((n+1)); if [ $n -le 10 ]; then sleep 0.1; elif [ $n -le 18 ]; then sleep 0.25; else sleep 1; fi; done`

// timedOut is timeout(1)'s exit status when the command ran out of time.
const timedOut = 124

// nodeGrace is added to the node command's own bound, so the node-side
// timeout fires first and reports what was left running.
const nodeGrace = 15 * time.Second

// Run runs cmd.Line with /bin/sh in the guest and waits for it on the node
// (through the socket when it can, else qm guest exec). Output reaches
// cmd.Stdout/cmd.Stderr when the command ends: the agent cannot stream.
func (t *Transport) Run(ctx context.Context, cmd transport.Cmd) (transport.Result, error) {
	if s := t.sock(); s != nil {
		var in []byte
		if cmd.Stdin != nil {
			b, err := io.ReadAll(cmd.Stdin)
			if err != nil {
				return transport.Result{}, fmt.Errorf("read stdin: %w", err)
			}
			in = b
		}
		c := cmd
		if in != nil {
			c.Stdin = bytes.NewReader(in)
		}
		res, err := s.Run(ctx, c)
		if t.usable(err) {
			return res, err
		}
		if in != nil {
			cmd.Stdin = bytes.NewReader(in)
		}
	}
	var stdin []byte
	if cmd.Stdin != nil {
		b, err := readStdin(cmd.Stdin)
		if err != nil {
			return transport.Result{}, fmt.Errorf("read stdin: %w", err)
		}
		if len(b) > MaxStdin {
			return transport.Result{}, fmt.Errorf("stdin over %d bytes: the guest agent passes at most 1 MiB - 1 B to a command", MaxStdin)
		}
		stdin = b
	}
	st, err := t.exec(ctx, cmd, stdin)
	if err != nil {
		return transport.Result{}, err
	}
	return qga.Result(qga.Status{Stdout: latin1(st.OutData), Stderr: latin1(st.ErrData), ExitCode: st.ExitCode, Signal: st.Signal,
		OutTruncated: bool(st.OutTruncated), ErrTruncated: bool(st.ErrTruncated)}, cmd)
}

// readStdin reads up to MaxStdin+1 bytes of r, in one buffer of the right
// size when r knows its length (a file's chunks: io.ReadAll would grow its
// buffer to twice a 1 MiB chunk, for every chunk).
func readStdin(r io.Reader) ([]byte, error) {
	if l, ok := r.(interface{ Len() int }); ok && l.Len() <= MaxStdin {
		b := make([]byte, l.Len())
		_, err := io.ReadFull(r, b)
		return b, err
	}
	return io.ReadAll(io.LimitReader(r, MaxStdin+1))
}

// execStatus is the final object of qm guest exec-status (reference §5.3).
type execStatus struct {
	Exited       flag   `json:"exited"`
	ExitCode     *int   `json:"exitcode"`
	Signal       *int   `json:"signal"`
	OutData      string `json:"out-data"`
	ErrData      string `json:"err-data"`
	OutTruncated flag   `json:"out-truncated"`
	ErrTruncated flag   `json:"err-truncated"`
}

// flag reads qm's 0/1 numbers (and JSON booleans, should a version print them).
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "1", "true":
		*f = true
	case "0", "false", "null":
		*f = false
	default:
		return fmt.Errorf("want 0 or 1, got %s", b)
	}
	return nil
}

// exec starts cmd in the guest and waits for it on the node, in one node
// command: qm guest exec --synchronous 0 prints the pid at once (the
// synchronous default would give up after 30 s and print only the pid), the
// node prints it as "pid N", then a node-side loop polls exec-status under
// timeout(1). A failure after the pid line, or one that does not prove the
// exec never reached the agent, is a *transport.StatusUnknownError: the
// command may be running, and nobody may run it again elsewhere.
func (t *Transport) exec(ctx context.Context, cmd transport.Cmd, stdin []byte) (execStatus, error) {
	limit, err := t.limit(ctx, cmd.Timeout)
	if err != nil {
		return execStatus{}, err
	}
	nc := transport.Cmd{
		Line:    t.execScript(cmd.Line, cmd.Stdin != nil, limit),
		Secrets: transport.RequotedSecrets(cmd.Secrets),
		Timeout: time.Duration(limit)*time.Second + nodeGrace,
	}
	if cmd.Stdin != nil {
		nc.Stdin = bytes.NewReader(stdin)
	}
	res, err := t.runNode(ctx, nc)
	pid, status := startedPID(res.Stdout)
	if code := transport.ExitCode(err); code == timedOut {
		return execStatus{}, fmt.Errorf("run %q: %s: %w", cmd.Printable(), transport.Tail(res.Stderr, 1), context.DeadlineExceeded)
	}
	if err != nil {
		op := "qm guest exec"
		if pid > 0 {
			op = "qm guest exec-status"
		}
		cerr := classify(op, err)
		if pid > 0 || mayHaveStarted(err) {
			return execStatus{}, &transport.StatusUnknownError{Line: cmd.Printable(), Channel: t.Name(), PID: pid, Cause: cerr}
		}
		return execStatus{}, cerr
	}
	var st execStatus
	if err := json.Unmarshal(status, &st); err != nil {
		return execStatus{}, fmt.Errorf("qm guest exec-status: %w in %q", err, transport.Shorten(string(status), 200))
	}
	if !st.Exited {
		return execStatus{}, fmt.Errorf("qm guest exec-status: process not exited in %q", transport.Shorten(string(status), 200))
	}
	return st, nil
}

// startedPID splits the node command's output into the guest pid the node
// printed once the exec was accepted (0 when it never got that far) and
// the final exec-status object.
func startedPID(out []byte) (int, []byte) {
	line, rest, ok := bytes.Cut(out, []byte("\n"))
	num, isPID := bytes.CutPrefix(line, []byte("pid "))
	if !ok || !isPID {
		return 0, out
	}
	pid, err := strconv.Atoi(string(num))
	if err != nil {
		return 0, out
	}
	return pid, rest
}

// mayHaveStarted reports a failed node command, with no pid printed, that
// does not prove the exec never reached the agent: the node connection
// broke, or the guest-exec request was sent and no answer came ("got
// timeout"). What proves it never started: the checks qm makes first (agent
// configured, VM running, guest-ping answered), no connection to the agent's
// socket, and a refusal by the agent ("Agent error: …").
func mayHaveStarted(err error) bool {
	var ee *transport.ExitError
	if !errors.As(err, &ee) {
		return errors.Is(err, transport.ErrDisconnected)
	}
	for _, l := range strings.Split(string(ee.Stderr), "\n") {
		if strings.Contains(l, "qmp command 'guest-exec-status' failed") ||
			strings.Contains(l, "qmp command 'guest-exec' failed - ") && !strings.Contains(l, "unable to connect to VM") {
			return true
		}
	}
	return false
}

// execScript is the node command of exec.
func (t *Transport) execScript(line string, stdin bool, limit int) string {
	vmid := strconv.Itoa(t.VMID)
	argv := []string{"qm", "guest", "exec", vmid, "--synchronous", "0"}
	if stdin {
		argv = append(argv, "--pass-stdin", "1")
	}
	argv = append(argv, "--", "/bin/sh", "-c", qga.GuestEnv+line)
	return fmt.Sprintf(`o=$(%s) || exit; p=$(printf %%s "$o" | tr -dc 0-9); `+
		`[ -n "$p" ] || { printf 'qm guest exec printed no pid: %%s\n' "$o" >&2; exit 125; }; printf 'pid %%s\n' "$p"; `+
		`timeout %d sh -c %s sh %s "$p"; c=$?; `+
		`[ $c -ne %d ] || printf 'guest process %%s still running after %ds\n' "$p" >&2; exit $c`,
		transport.Command(argv...), limit, transport.Quote(pollLoop), vmid, timedOut, limit)
}

// limit is the node-side bound of a guest command in whole seconds
// (transport.Bound).
func (t *Transport) limit(ctx context.Context, timeout time.Duration) (int, error) {
	d, err := transport.Bound(ctx, timeout, t.DefaultTimeout)
	return int(math.Ceil(d.Seconds())), err
}
