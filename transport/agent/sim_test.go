package agent_test

// A node-side simulator: the test binary doubles as `qm` and `pvesh`, and the
// "guest" is this machine. The node commands the agent transport builds run
// in a real /bin/sh with these stand-ins first on PATH, so the quoting, the
// node-side poll loop, timeout(1), stdin passing, the Latin-1 encoding and
// the chunked transfers are all exercised for real. Only the QGA socket is
// simulated: exec is a detached process whose status lands in files.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

const (
	simTool = "PHOENIX_AGENT_SIM"     // which tool this process plays
	simDir  = "PHOENIX_AGENT_SIM_DIR" // the simulated agent's state
)

func TestMain(m *testing.M) {
	if tool := os.Getenv(simTool); tool != "" {
		if tool == "kvm" { // a VM's QEMU process, as the socket helper checks it
			time.Sleep(time.Hour)
			os.Exit(0)
		}
		if t, ok := strings.CutPrefix(tool, "pvesim:"); ok {
			os.Exit(pvesimMain(t))
		}
		os.Exit(simMain(tool, os.Args[1:], os.Getenv(simDir)))
	}
	os.Exit(m.Run())
}

// simNode is a transport.Runner that runs node commands locally with the
// simulated qm and pvesh first on PATH.
type simNode struct {
	bin, state string
	perlTries  atomic.Int32 // see noPerl
}

func newSimNode(t *testing.T) *simNode {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n := &simNode{bin: t.TempDir(), state: t.TempDir()}
	for _, tool := range []string{"qm", "pvesh"} {
		script := fmt.Sprintf("#!/bin/sh\n%s=%s %s=%s exec %s \"$@\"\n", simTool, tool, simDir, transport.Quote(n.state), transport.Quote(exe))
		if err := os.WriteFile(filepath.Join(n.bin, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// Run runs c.Line in a local shell with the stand-ins first on PATH; an
// *ExitError names the caller's line.
func (n *simNode) Run(ctx context.Context, c transport.Cmd) (transport.Result, error) {
	line := c.Printable()
	c.Line = "PATH=" + transport.Quote(n.bin) + ":$PATH; export PATH; " + c.Line
	res, err := local.Shell{}.Run(ctx, c)
	var ee *transport.ExitError
	if errors.As(err, &ee) {
		ee.Line = line
	}
	return res, err
}

// fault switches a simulated fault on (a file in the state directory).
func (n *simNode) fault(t *testing.T, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(n.state, name), []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
}

func simMain(tool string, args []string, dir string) int {
	if _, err := os.Stat(filepath.Join(dir, "agent-off")); err == nil {
		fmt.Fprintln(os.Stderr, "QEMU guest agent is not running")
		return 255
	}
	var err error
	switch {
	case tool == "qm" && len(args) == 4 && args[0] == "guest" && args[1] == "cmd" && args[3] == "ping":
		return 0
	case tool == "qm" && len(args) > 3 && args[0] == "guest" && args[1] == "exec":
		err = simExec(args[3:], dir)
	case tool == "qm" && len(args) == 4 && args[0] == "guest" && args[1] == "exec-status":
		err = simExecStatus(args[3], dir)
	case tool == "pvesh" && len(args) > 2 && args[0] == "get" && strings.HasSuffix(args[1], "/agent/file-read"):
		err = simFileRead(simOpts(args[2:]), dir)
	default:
		err = fmt.Errorf("400 unable to parse option: %s %q", tool, args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 255
	}
	return 0
}

func simOpts(args []string) map[string]string {
	o := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		o[strings.TrimPrefix(args[i], "--")] = args[i+1]
	}
	return o
}

// simExec starts argv detached; its exit status and output land in files.
func simExec(args []string, dir string) error {
	var argv []string
	passStdin := false
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--synchronous":
			if args[i+1] != "0" {
				return fmt.Errorf("simulator: only --synchronous 0")
			}
			i++
		case "--pass-stdin":
			passStdin = args[i+1] == "1"
			i++
		case "--":
			argv = args[i+1:]
			i = len(args)
		default:
			return fmt.Errorf("400 unable to parse option %s", args[i])
		}
	}
	var in []byte
	if passStdin {
		var err error
		if in, err = io.ReadAll(os.Stdin); err != nil {
			return err
		}
		if len(in) >= 1<<20 {
			return fmt.Errorf("'input-data' (STDIN) is limited to 1 MiB, aborting")
		}
	}
	pid, pdir, err := newPid(dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pdir, "in"), in, 0o600); err != nil {
		return err
	}
	c := exec.Command("/bin/sh", append([]string{"-c", `"$@" <"$D/in" >"$D/out" 2>"$D/err"; echo $? >"$D/rc.tmp"; mv "$D/rc.tmp" "$D/rc"`, "sh"}, argv...)...)
	c.Env = append(os.Environ(), "D="+pdir)
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return err
	}
	c.Process.Release()
	fmt.Printf("{\n   \"pid\" : %d\n}\n", pid)
	return nil
}

func newPid(dir string) (int, string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "exec"), 0o700); err != nil {
		return 0, "", err
	}
	for pid := 1000; ; pid++ {
		p := filepath.Join(dir, "exec", strconv.Itoa(pid))
		if err := os.Mkdir(p, 0o700); err == nil {
			return pid, p, nil
		} else if !os.IsExist(err) {
			return 0, "", err
		}
	}
}

func simExecStatus(pid, dir string) error {
	pdir := filepath.Join(dir, "exec", pid)
	if _, err := os.Stat(filepath.Join(pdir, "done")); err == nil {
		return fmt.Errorf("Agent error: Invalid parameter 'pid'")
	}
	rc, err := os.ReadFile(filepath.Join(pdir, "rc"))
	if os.IsNotExist(err) {
		if _, err := os.Stat(pdir); err != nil {
			return fmt.Errorf("Agent error: Invalid parameter 'pid'")
		}
		fmt.Print("{\n   \"exited\" : 0\n}\n")
		return nil
	}
	if err != nil {
		return err
	}
	fields := [][2]string{}
	if b, _ := os.ReadFile(filepath.Join(pdir, "err")); len(b) > 0 {
		fields = append(fields, [2]string{"err-data", latin1JSON(b)})
	}
	fields = append(fields, [2]string{"exitcode", strings.TrimSpace(string(rc))}, [2]string{"exited", "1"})
	if b, _ := os.ReadFile(filepath.Join(pdir, "out")); len(b) > 0 {
		fields = append(fields, [2]string{"out-data", latin1JSON(b)})
	}
	// qemu-ga forgets a process once it has reported it.
	if err := os.WriteFile(filepath.Join(pdir, "done"), nil, 0o600); err != nil {
		return err
	}
	// Perl's pretty+canonical style (reference §1.5).
	var b strings.Builder
	b.WriteString("{\n")
	for i, f := range fields {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "   %q : %s", f[0], f[1])
	}
	b.WriteString("\n}\n")
	fmt.Print(b.String())
	return nil
}

// latin1JSON encodes bytes the way qm does: each byte as the character of
// the same number, then JSON with UTF-8 output ("ä" → "Ã¤").
func latin1JSON(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.Encode(string(r))
	return strings.TrimSuffix(out.String(), "\n")
}

func simFileRead(o map[string]string, dir string) error {
	b, err := os.ReadFile(o["file"])
	if err != nil {
		return fmt.Errorf("Agent error: failed to open file '%s' (mode: 'r'): No such file or directory", o["file"])
	}
	limit := 16 << 20
	if v, err := os.ReadFile(filepath.Join(dir, "read-cap")); err == nil {
		limit, _ = strconv.Atoi(string(v))
	}
	truncated := ""
	if len(b) > limit {
		b, truncated = b[:limit], `,"truncated":1`
		fmt.Fprintf(os.Stderr, "agent file-read: reached maximum read size: %d bytes. output might be truncated.\n", limit)
	}
	fmt.Printf("{\"bytes-read\":%d,\"content\":%s%s}\n", len(b), latin1JSON(b), truncated)
	return nil
}
