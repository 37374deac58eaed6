// Package qga talks to a VM's QEMU guest agent through its socket on the
// Proxmox node, without a `qm` process: a small Perl script (helper.pl,
// shipped on stdin to `perl -`, so nothing is installed on the node; every
// Proxmox node has Perl) checks that the VM runs, connects to
// /var/run/qemu-server/VMID.qga, syncs with guest-sync-delimited and sends
// a batch of commands on that one connection, polling guest-exec-status of
// a started command at a short interval. One node command per batch, where
// `qm guest exec` costs a Perl start-up of Proxmox's modules per call and
// polls once a second. Base64 (input-data, out-data) is encoded and decoded
// here, so any bytes survive.
package qga

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

//go:embed helper.pl
var helper string

// RunDir is where Proxmox keeps a running VM's pid file and sockets.
const RunDir = "/var/run/qemu-server"

// Defaults of Client.
const (
	// DefaultSync bounds connecting and the sync: PVE gives guest-ping 3 s.
	DefaultSync = 3 * time.Second
	// DefaultHold is how long a started command is polled on the batch's
	// connection before each poll gets its own, so that a long command
	// does not keep the one-client socket from Proxmox.
	DefaultHold = 2 * time.Second
	// nodeGrace is added to the node command's bound, so the helper's own
	// deadlines fire first and say what was left running.
	nodeGrace = 15 * time.Second
)

// Client sends agent commands to VM VMID through its node.
type Client struct {
	Node transport.Runner
	VMID int
	// RunDir is where the pid file and the socket are; "" is RunDir.
	RunDir string
	// Sync and Hold: "" is DefaultSync and DefaultHold.
	Sync, Hold time.Duration
}

// Exec is one guest-exec: Path with Args, Stdin as its input (nil: none,
// the process reads /dev/null), its output captured.
type Exec struct {
	Path  string
	Args  []string
	Stdin []byte
	// Timeout bounds the process; it must be set.
	Timeout time.Duration
}

// Status is the guest-exec-status that said the process exited.
type Status struct {
	PID          int
	ExitCode     *int
	Signal       *int
	Stdout       []byte
	Stderr       []byte
	OutTruncated bool // the agent keeps at most 16 MiB of each stream
	ErrTruncated bool
}

// DownError says the VM or its agent could not be reached; nothing of the
// batch (from the command it names on) reached the guest.
type DownError struct{ Text string }

func (e *DownError) Error() string { return e.Text }
func (e *DownError) Unwrap() error { return transport.ErrAgentUnavailable }

// LostError says a command reached the agent and its end was not seen: it
// may be running, or have done its work. PID is its guest pid when the
// agent said it (0: it may or may not have started). A command that
// outlived its Timeout unwraps to context.DeadlineExceeded; one cut off by
// a failed node command unwraps to that failure (Cause); one whose agent
// stopped answering to transport.ErrAgentUnavailable.
type LostError struct {
	PID     int
	Text    string
	Timeout bool
	Cause   error
}

func (e *LostError) Error() string {
	switch {
	case e.Timeout:
		return fmt.Sprintf("guest process %d still running after its timeout", e.PID)
	case e.PID > 0:
		return fmt.Sprintf("guest process %d: %s", e.PID, e.Text)
	}
	return e.Text
}

func (e *LostError) Unwrap() error {
	switch {
	case e.Timeout:
		return context.DeadlineExceeded
	case e.Cause != nil:
		return e.Cause
	}
	return transport.ErrAgentUnavailable
}

// HelperError says the helper could not run on the node (no perl, say):
// nothing reached the agent; qm guest can still be used.
type HelperError struct {
	Code   int
	Stderr string
}

func (e *HelperError) Error() string {
	return fmt.Sprintf("agent helper on the node: exit %d: %s", e.Code, e.Stderr)
}

// AgentError is the agent's own refusal of a command (a program that
// cannot be started): the command did not run.
type AgentError struct{ Class, Desc string }

func (e *AgentError) Error() string { return "agent error: " + e.Desc }

// Ping reports whether the agent answers the sync: nil, a *DownError, or an
// error of the node command.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, nil)
	return err
}

// Exec runs execs in the guest one after the other, in one node command on
// one agent connection. It returns the status of each exec that ended, in
// order; the error, if any, is about the first one that did not: a
// *DownError (it and the rest never reached the agent), a *LostError (it
// was sent, its end not seen; the rest were not sent), an *AgentError (it
// was refused; the rest were not sent), or a failure of the node command
// before anything reached the agent.
func (c *Client) Exec(ctx context.Context, execs ...Exec) ([]Status, error) {
	reqs := make([]request, len(execs))
	for i, e := range execs {
		if e.Timeout <= 0 {
			return nil, fmt.Errorf("exec %s: no timeout", e.Path)
		}
		args := map[string]any{"path": e.Path, "capture-output": true}
		if len(e.Args) > 0 {
			args["arg"] = e.Args
		}
		if e.Stdin != nil {
			args["input-data"] = base64.StdEncoding.EncodeToString(e.Stdin)
		}
		b, err := json.Marshal(map[string]any{"execute": "guest-exec", "arguments": args})
		if err != nil {
			return nil, err
		}
		reqs[i] = request{json: b, timeout: e.Timeout}
	}
	recs, err := c.do(ctx, reqs)
	out := make([]Status, 0, len(execs))
	for i, r := range recs {
		st, rerr := r.result()
		if rerr != nil {
			var lost *LostError
			if errors.As(rerr, &lost) && !lost.Timeout && err != nil {
				lost.Cause = err
			}
			return out, fmt.Errorf("exec %d of %d: %w", i+1, len(execs), rerr)
		}
		out = append(out, st)
	}
	switch {
	case err != nil:
		return out, err
	case len(out) < len(execs):
		return out, fmt.Errorf("exec %d of %d: the helper ended without an answer", len(out)+1, len(execs))
	}
	return out, nil
}

// request is one guest-exec of the helper's input.
type request struct {
	json    []byte
	timeout time.Duration
}

// record is the helper's output about one request.
type record struct {
	reply, status []byte
	lost          string // lost: why
	running       int    // running: the guest pid
}

// done reports a record that says how its request ended.
func (r record) done() bool {
	return r.status != nil || r.lost != "" || r.running > 0 || bytes.HasPrefix(r.reply, []byte(`{"error"`))
}

// do runs the helper with reqs and returns a record per request it got to.
// When the node command failed after the agent answered, the request it
// was at is in the records, unfinished: it may have reached the agent.
func (c *Client) do(ctx context.Context, reqs []request) ([]record, error) {
	sync, hold := c.Sync, c.Hold
	if sync <= 0 {
		sync = DefaultSync
	}
	if hold <= 0 {
		hold = DefaultHold
	}
	dir := c.RunDir
	if dir == "" {
		dir = RunDir
	}
	var in bytes.Buffer
	in.WriteString(helper)
	in.WriteString("\n__END__\n")
	bound := 2*sync + nodeGrace
	for _, r := range reqs {
		fmt.Fprintf(&in, "%d %s\n", r.timeout.Milliseconds(), r.json)
		bound += r.timeout + 2*sync
	}
	line := transport.Command("perl", "-", strconv.Itoa(c.VMID), dir,
		strconv.FormatInt(sync.Milliseconds(), 10), strconv.FormatInt(hold.Milliseconds(), 10))
	res, err := c.Node.Run(ctx, transport.Cmd{Line: line, Stdin: &in, Timeout: bound})
	recs, up, ended, perr := parse(res.Stdout, len(reqs))
	var down *DownError
	switch {
	case errors.As(perr, &down):
		return recs, perr
	case err != nil && ctx.Err() != nil:
		err = fmt.Errorf("agent of vm %d: %w", c.VMID, ctx.Err())
	case err != nil && !up && transport.ExitCode(err) > 0:
		// The helper did not run (no perl) or failed before it talked
		// to the agent.
		return nil, &HelperError{Code: transport.ExitCode(err), Stderr: transport.Tail(res.Stderr, 3)}
	case err != nil:
		err = fmt.Errorf("agent helper for vm %d: %w", c.VMID, err)
	case perr != nil:
		err = fmt.Errorf("agent helper for vm %d: %w", c.VMID, perr)
	case !ended:
		err = fmt.Errorf("agent helper for vm %d: its output ends early: %q", c.VMID, transport.Tail(res.Stdout, 2))
	}
	if err != nil && up && !ended && len(recs) < len(reqs) && (len(recs) == 0 || recs[len(recs)-1].done()) {
		// Cut off between two requests: the next one may have been sent.
		recs = append(recs, record{lost: "the node command ended: it may have started"})
	}
	return recs, err
}

// parse reads the helper's output records.
func parse(out []byte, n int) (recs []record, up, ended bool, err error) {
	recs = make([]record, 0, n)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20) // an exec-status line holds up to 2 × 16 MiB as base64
	bad := func() error { return fmt.Errorf("unexpected output line %q", transport.Shorten(sc.Text(), 200)) }
	for sc.Scan() {
		tag, rest, _ := strings.Cut(sc.Text(), " ")
		switch tag {
		case "up":
			up = true
			continue
		case "end":
			ended = true
			continue
		case "down":
			return recs, up, ended, &DownError{Text: rest}
		}
		is, arg, _ := strings.Cut(rest, " ")
		i, cerr := strconv.Atoi(is)
		if cerr != nil || i < 0 || i >= n || i > len(recs) {
			return recs, up, ended, bad()
		}
		if i == len(recs) {
			recs = append(recs, record{})
		}
		r := &recs[i]
		switch tag {
		case "reply":
			r.reply = []byte(arg)
		case "status":
			r.status = []byte(arg)
		case "lost":
			r.lost = arg
		case "running":
			if r.running, cerr = strconv.Atoi(arg); cerr != nil || r.running <= 0 {
				return recs, up, ended, bad()
			}
		default:
			return recs, up, ended, bad()
		}
	}
	return recs, up, ended, sc.Err()
}

// result turns an exec's record into its final status or its error.
func (r record) result() (Status, error) {
	var st Status
	if r.reply != nil {
		var rep struct {
			Return *struct {
				PID int `json:"pid"`
			} `json:"return"`
			Error *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.reply, &rep); err != nil {
			return st, &LostError{Text: fmt.Sprintf("guest-exec: %v in %q", err, transport.Shorten(string(r.reply), 200))}
		}
		switch {
		case rep.Error != nil:
			return st, &AgentError{Class: rep.Error.Class, Desc: rep.Error.Desc}
		case rep.Return != nil:
			st.PID = rep.Return.PID
		}
	}
	switch {
	case r.running > 0:
		return st, &LostError{PID: r.running, Timeout: true}
	case r.lost != "":
		return st, &LostError{PID: st.PID, Text: r.lost}
	case r.status == nil:
		return st, &LostError{PID: st.PID, Text: "no exec-status"}
	}
	var es struct {
		Return struct {
			Exited       bool   `json:"exited"`
			ExitCode     *int   `json:"exitcode"`
			Signal       *int   `json:"signal"`
			OutData      string `json:"out-data"`
			ErrData      string `json:"err-data"`
			OutTruncated bool   `json:"out-truncated"`
			ErrTruncated bool   `json:"err-truncated"`
		} `json:"return"`
	}
	if err := json.Unmarshal(r.status, &es); err != nil || !es.Return.Exited {
		return st, &LostError{PID: st.PID, Text: fmt.Sprintf("guest-exec-status: %q", transport.Shorten(string(r.status), 200))}
	}
	var err error
	if st.Stdout, err = base64.StdEncoding.DecodeString(es.Return.OutData); err != nil {
		return st, &LostError{PID: st.PID, Text: "guest-exec-status: out-data: " + err.Error()}
	}
	if st.Stderr, err = base64.StdEncoding.DecodeString(es.Return.ErrData); err != nil {
		return st, &LostError{PID: st.PID, Text: "guest-exec-status: err-data: " + err.Error()}
	}
	st.ExitCode, st.Signal = es.Return.ExitCode, es.Return.Signal
	st.OutTruncated, st.ErrTruncated = es.Return.OutTruncated, es.Return.ErrTruncated
	return st, nil
}
