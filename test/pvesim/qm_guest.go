package pvesim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// agentCommands are the commands of `qm guest cmd`.
var agentCommands = []string{
	"fsfreeze-freeze", "fsfreeze-status", "fsfreeze-thaw", "fstrim", "get-fsinfo", "get-host-name",
	"get-memory-block-info", "get-memory-blocks", "get-osinfo", "get-time", "get-timezone", "get-users",
	"get-vcpus", "info", "network-get-interfaces", "ping", "shutdown", "suspend-disk", "suspend-hybrid", "suspend-ram",
}

// agentEnabled reads the agent option ("1", "enabled=1,fstrim_cloned_disks=1").
func agentEnabled(conf map[string]string) bool {
	v, ok := conf["agent"]
	if !ok {
		return false
	}
	b, _ := parseBool(parsePropString(v, "enabled").get("enabled"))
	return b == "1"
}

// agentAvailable is the check every agent command makes, in this order:
// config, agent option (current config, pending does not count), VM
// running, guest-ping answered within 3 s.
func (c *call) agentAvailable(vmid int) (*vmConfig, error) {
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return nil, err
	}
	if _, ok := conf.main["agent"]; !ok {
		return nil, errorf("No QEMU guest agent configured")
	}
	if running, err := c.isRunning(vmid); err != nil {
		return nil, err
	} else if !running {
		return nil, errorf("VM %d is not running", vmid)
	}
	// agent: 0 gives the VM no agent channel, so nothing can answer.
	if !agentEnabled(conf.main) {
		return nil, errorf("QEMU guest agent is not running")
	}
	if r, err := c.qga(vmid, "guest-ping", nil, c.PingTimeout); err != nil || r.Error != nil {
		return nil, errorf("QEMU guest agent is not running")
	}
	return conf, nil
}

// agentTimeout is QMPClient's per-command timeout.
func (c *call) agentTimeout(cmd string) time.Duration {
	switch cmd {
	case "guest-fsfreeze-freeze":
		return time.Hour
	case "guest-fsfreeze-thaw":
		return 3 * time.Minute
	case "guest-fstrim", "guest-shutdown", "guest-suspend-disk", "guest-suspend-hybrid", "guest-suspend-ram":
		return 10 * time.Minute
	}
	return c.AgentTimeout
}

// agentCall runs cmd and turns a guest-side error into "Agent error: ...".
func (c *call) agentCall(vmid int, cmd string, args any, v any) error {
	r, err := c.qga(vmid, cmd, args, c.agentTimeout(cmd))
	if err != nil {
		return err
	}
	if r.Error != nil {
		return errorf("Agent error: %s", r.Error.Desc)
	}
	if v == nil {
		return nil
	}
	if err := qgaDecode(r, v); err != nil {
		return errorf("Agent error: %s: bad reply: %v", cmd, err)
	}
	return nil
}

func (c *call) qmGuestCmd(p *params) error {
	vmid := vmidOf(p, "vmid")
	res, err := c.agentCommand(vmid, p.get("command"))
	if err != nil {
		return err
	}
	printAgentResult(c.stdout, res)
	return nil
}

// agentCommand runs one `qm guest cmd` command; an error reply of the
// guest is the result (qm prints it and exits 0).
func (c *call) agentCommand(vmid int, command string) (any, error) {
	if _, err := c.agentAvailable(vmid); err != nil {
		return nil, err
	}
	cmd := "guest-" + command
	r, err := c.qga(vmid, cmd, nil, c.agentTimeout(cmd))
	if err != nil {
		return nil, err
	}
	if r.Error != nil {
		return map[string]any{"error": map[string]any{"class": r.Error.Class, "desc": r.Error.Desc}}, nil
	}
	var res any
	if len(r.Return) > 0 {
		if err := qgaDecode(r, &res); err != nil {
			return nil, errorf("Agent error: %s: bad reply: %v", cmd, err)
		}
	}
	return res, nil
}

// printAgentResult is qm's $print_agent_result: nothing for an empty
// result, a scalar on one line, anything else as pretty JSON.
func printAgentResult(w io.Writer, res any) {
	switch v := res.(type) {
	case nil:
		return
	case string:
		v = strings.TrimSuffix(v, "\n")
		if strings.TrimSpace(v) != "" {
			fmt.Fprintln(w, v)
		}
		return
	case json.Number:
		fmt.Fprintln(w, v)
		return
	case bool:
		fmt.Fprintln(w, map[bool]int{true: 1, false: 0}[v])
		return
	case map[string]any:
		if len(v) == 0 {
			return
		}
	}
	fmt.Fprint(w, perlJSONPretty(res))
}

const stdinMax = 1 << 20

func (c *call) qmGuestExec(p *params) error {
	vmid := vmidOf(p, "vmid")
	sync := p.flag("synchronous", true)
	if p.has("timeout") && !sync {
		return badParam("synchronous", "needs to be set for 'timeout'")
	}
	var input []byte
	hasInput := p.flag("pass-stdin", false)
	if hasInput {
		var err error
		input, err = io.ReadAll(io.LimitReader(c.stdin, stdinMax+1))
		if err != nil {
			return err
		}
		if len(input) > stdinMax {
			return errorf("'input-data' (STDIN) is limited to 1 MiB, aborting")
		}
	}
	if _, err := c.loadConfig(vmid); err != nil {
		return err
	}
	if len(p.extra) == 0 && !hasInput {
		return errorf("command or input-data (or both) required")
	}
	if _, err := c.agentAvailable(vmid); err != nil {
		return err
	}
	pid, err := c.agentExec(vmid, p.extra, input, hasInput)
	if err != nil {
		return err
	}
	if !sync {
		fmt.Fprint(c.stdout, perlJSONPretty(map[string]any{"pid": pid}))
		return nil
	}
	timeout := time.Duration(p.num("timeout", 30)) * time.Second
	start := time.Now()
	for timeout == 0 || time.Since(start) < timeout {
		st, err := c.execStatus(vmid, pid)
		if err != nil {
			return err
		}
		if st["exited"] == 1 {
			fmt.Fprint(c.stdout, perlJSONPretty(st))
			return nil
		}
		if err := sleep(c.ctx, c.PollInterval); err != nil {
			return err
		}
	}
	fmt.Fprintln(c.stderr, "timeout reached, returning pid")
	fmt.Fprint(c.stdout, perlJSONPretty(map[string]any{"pid": pid}))
	return nil
}

// agentExec is qemu_exec: argv (no shell) and optional stdin bytes.
func (c *call) agentExec(vmid int, argv []string, input []byte, hasInput bool) (json.Number, error) {
	args := map[string]any{"capture-output": true}
	if len(argv) > 0 {
		rest := make([]any, len(argv)-1)
		for i, a := range argv[1:] {
			rest[i] = a
		}
		args["path"] = argv[0]
		args["arg"] = rest
	}
	if hasInput {
		args["input-data"] = base64.StdEncoding.EncodeToString(input)
	}
	var res struct {
		PID json.Number `json:"pid"`
	}
	if err := c.agentCall(vmid, "guest-exec", args, &res); err != nil {
		return "", err
	}
	return res.PID, nil
}

// execStatus is qemu_exec_status: output decoded from base64 (bytes as
// Latin-1 characters), booleans as 1/0.
func (c *call) execStatus(vmid int, pid json.Number) (map[string]any, error) {
	var raw map[string]any
	if err := c.agentCall(vmid, "guest-exec-status", map[string]any{"pid": pid}, &raw); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for k, v := range raw {
		switch x := v.(type) {
		case bool:
			out[k] = map[bool]int{true: 1, false: 0}[x]
		case string:
			if k == "out-data" || k == "err-data" {
				b, err := base64.StdEncoding.DecodeString(x)
				if err != nil {
					return nil, errorf("Agent error: %s: %v", k, err)
				}
				if len(b) == 0 {
					continue
				}
				out[k] = latin1(b)
				continue
			}
			out[k] = x
		default:
			out[k] = v
		}
	}
	return out, nil
}

func (c *call) qmGuestExecStatus(p *params) error {
	vmid := vmidOf(p, "vmid")
	if _, err := c.agentAvailable(vmid); err != nil {
		return err
	}
	st, err := c.execStatus(vmid, json.Number(p.get("pid")))
	if err != nil {
		return err
	}
	fmt.Fprint(c.stdout, perlJSONPretty(st))
	return nil
}
