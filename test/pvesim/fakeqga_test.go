package pvesim

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// fakeQGA serves the QEMU guest agent protocol on a unix socket the way
// qemu-ga in unix-listen mode does: one client at a time, one JSON object
// per line, guest-sync-delimited answered behind a 0xFF sentinel, error
// replies as {"error": {"class", "desc"}}. guest-exec runs real programs
// on this machine; file commands use real files below root (the guest's /).
type fakeQGA struct {
	t        *testing.T
	ln       net.Listener
	hostname string
	root     string

	mu      sync.Mutex
	stale   bool // send leftovers of an earlier client before each sync reply
	silent  bool // accept and read, never answer (a hung agent)
	nextPID int
	procs   map[int]*fakeProc
	nextFD  int
	files   map[int]*os.File
	calls   []string
}

type fakeProc struct {
	done     chan struct{}
	out, err bytes.Buffer
	state    *os.ProcessState
}

// startFakeQGA listens on path until the test ends.
func startFakeQGA(t *testing.T, path, hostname string) *fakeQGA {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQGA{t: t, ln: ln, hostname: hostname, root: t.TempDir(), nextPID: 4242, procs: map[int]*fakeProc{}, nextFD: 1000, files: map[int]*os.File{}}
	if err := os.Mkdir(filepath.Join(q.root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	go q.serve()
	t.Cleanup(func() { ln.Close() })
	return q
}

func (q *fakeQGA) set(f func(q *fakeQGA)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f(q)
}

func (q *fakeQGA) commands() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.calls...)
}

func (q *fakeQGA) serve() {
	for {
		conn, err := q.ln.Accept()
		if err != nil {
			return
		}
		q.handle(conn) // serially, like qemu-ga
	}
}

func (q *fakeQGA) handle(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		line = bytes.Trim(line, "\xff \r\n")
		if len(line) == 0 {
			continue
		}
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			q.reply(conn, nil, &qgaError{Class: "GenericError", Desc: "JSON parse error"})
			continue
		}
		q.mu.Lock()
		q.calls = append(q.calls, req.Execute)
		silent, stale := q.silent, q.stale
		q.mu.Unlock()
		if silent {
			continue
		}
		switch req.Execute {
		case "guest-sync-delimited":
			var a struct{ ID json.Number }
			json.Unmarshal(req.Arguments, &a)
			if stale {
				conn.Write([]byte("{\"return\": {\"pid\": 1}}\n{\"ret"))
			}
			conn.Write([]byte{0xff})
			q.reply(conn, a.ID, nil)
		case "guest-shutdown":
			// success-response: false, no reply at all
		default:
			res, qerr := q.exec(req.Execute, req.Arguments)
			q.reply(conn, res, qerr)
		}
	}
}

func (q *fakeQGA) reply(w io.Writer, res any, qerr *qgaError) {
	var msg any = map[string]any{"return": res}
	if qerr != nil {
		msg = map[string]any{"error": qerr}
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		q.t.Errorf("fake qga: %v", err)
		return
	}
	w.Write(append(raw, '\n'))
}

func generic(format string, a ...any) *qgaError {
	return &qgaError{Class: "GenericError", Desc: fmt.Sprintf(format, a...)}
}

func (q *fakeQGA) exec(cmd string, rawArgs json.RawMessage) (any, *qgaError) {
	var args struct {
		Path          string   `json:"path"`
		Arg           []string `json:"arg"`
		InputData     *string  `json:"input-data"`
		CaptureOutput bool     `json:"capture-output"`
		PID           int      `json:"pid"`
		Mode          string   `json:"mode"`
		Handle        int      `json:"handle"`
		Count         int      `json:"count"`
		Buf           string   `json:"buf-b64"`
		ID            int64    `json:"id"`
	}
	if len(rawArgs) > 0 {
		if err := json.Unmarshal(rawArgs, &args); err != nil {
			return nil, generic("Invalid parameter type: %v", err)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch cmd {
	case "guest-sync":
		return args.ID, nil
	case "guest-ping":
		return map[string]any{}, nil
	case "guest-get-host-name":
		return map[string]any{"host-name": q.hostname}, nil
	case "guest-get-osinfo":
		return map[string]any{"id": "debian", "kernel-release": "6.1.0-28-amd64", "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)",
			"machine": "x86_64", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 12 (bookworm)", "version": "12 (bookworm)", "version-id": "12"}, nil
	case "guest-network-get-interfaces":
		return []any{
			map[string]any{"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": []any{
				map[string]any{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}}},
			map[string]any{"name": "eth0", "hardware-address": "bc:24:11:12:34:56", "ip-addresses": []any{
				map[string]any{"ip-address": "10.0.10.123", "ip-address-type": "ipv4", "prefix": 24}},
				"statistics": map[string]any{"rx-bytes": 1234, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 12,
					"tx-bytes": 5678, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 34}},
		}, nil
	case "guest-info":
		return map[string]any{"version": "7.2.0", "supported_commands": []any{
			map[string]any{"enabled": true, "name": "guest-exec", "success-response": true},
			map[string]any{"enabled": true, "name": "guest-shutdown", "success-response": false},
		}}, nil
	case "guest-exec":
		return q.startProc(args.Path, args.Arg, args.InputData)
	case "guest-exec-status":
		p, ok := q.procs[args.PID]
		if !ok {
			return nil, generic("Invalid parameter 'pid'")
		}
		select {
		case <-p.done:
		default:
			return map[string]any{"exited": false}, nil
		}
		delete(q.procs, args.PID) // reported once, then forgotten
		res := map[string]any{"exited": true}
		if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res["signal"] = int(ws.Signal())
		} else {
			res["exitcode"] = p.state.ExitCode()
		}
		// qemu-ga 7.2 sends the truncation flag with every data key.
		if p.out.Len() > 0 {
			res["out-data"] = base64.StdEncoding.EncodeToString(p.out.Bytes())
			res["out-truncated"] = false
		}
		if p.err.Len() > 0 {
			res["err-data"] = base64.StdEncoding.EncodeToString(p.err.Bytes())
			res["err-truncated"] = false
		}
		return res, nil
	case "guest-file-open":
		flags := map[string]int{"r": os.O_RDONLY, "rb": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREATE | os.O_TRUNC,
			"wb": os.O_WRONLY | os.O_CREATE | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREATE | os.O_APPEND}
		mode := args.Mode
		if mode == "" {
			mode = "r"
		}
		f, err := os.OpenFile(filepath.Join(q.root, args.Path), flags[mode], 0o644)
		if err != nil {
			var errno syscall.Errno
			errors.As(err, &errno)
			return nil, generic("failed to open file '%s' (mode: '%s'): %s", args.Path, mode, syscallText(errno))
		}
		q.nextFD++
		q.files[q.nextFD] = f
		return q.nextFD, nil
	case "guest-file-write":
		f, ok := q.files[args.Handle]
		if !ok {
			return nil, generic("handle '%d' has not been found", args.Handle)
		}
		b, err := base64.StdEncoding.DecodeString(args.Buf)
		if err != nil {
			return nil, generic("Guest agent command failed, error was 'Base64 decoding error'")
		}
		n, err := f.Write(b)
		if err != nil {
			return nil, generic("failed to write to file: %v", err)
		}
		return map[string]any{"count": n, "eof": false}, nil
	case "guest-file-read":
		f, ok := q.files[args.Handle]
		if !ok {
			return nil, generic("handle '%d' has not been found", args.Handle)
		}
		buf := make([]byte, args.Count)
		n, err := io.ReadFull(f, buf)
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return nil, generic("failed to read file: %v", err)
		}
		return map[string]any{"count": n, "buf-b64": base64.StdEncoding.EncodeToString(buf[:n]), "eof": eof}, nil
	case "guest-file-close":
		f, ok := q.files[args.Handle]
		if !ok {
			return nil, generic("handle '%d' has not been found", args.Handle)
		}
		f.Close()
		delete(q.files, args.Handle)
		return map[string]any{}, nil
	}
	return nil, &qgaError{Class: "CommandNotFound", Desc: fmt.Sprintf("The command %s has not been found", cmd)}
}

// startProc runs the program for guest-exec; called with q.mu held.
func (q *fakeQGA) startProc(path string, argv []string, input *string) (any, *qgaError) {
	cmd := exec.Command(path, argv...)
	p := &fakeProc{done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.err
	if input != nil {
		data, err := base64.StdEncoding.DecodeString(*input)
		if err != nil {
			return nil, generic("Guest agent command failed, error was 'Base64 decoding error'")
		}
		cmd.Stdin = bytes.NewReader(data)
	}
	if err := cmd.Start(); err != nil {
		return nil, generic("Guest agent command failed, error was 'Failed to execute child process “%s” (No such file or directory)'", path)
	}
	q.nextPID++
	pid := q.nextPID
	q.procs[pid] = p
	go func() {
		cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	q.t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	return map[string]any{"pid": pid}, nil
}
