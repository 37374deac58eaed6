package pvesim

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// pvesh: the few API paths phoenix uses, with pvesh's parameter handling
// and output formats. "text" output of structured results is not
// simulated (pvesh draws tables): it prints pretty JSON instead.

type endpoint struct {
	method  string // get, create, set, delete
	pattern *regexp.Regexp
	props   []prop
	run     func(c *call, m []string, p *params) (any, error)
	// anyNode: the handler has no proxyto and runs here whatever node the
	// path names (VM firewall rules).
	anyNode bool
}

var (
	vmPath    = `^/nodes/([^/]+)/qemu/(\d+)`
	agentGets = []string{"get-fsinfo", "get-host-name", "get-memory-block-info", "get-memory-blocks", "get-osinfo",
		"get-time", "get-timezone", "get-users", "get-vcpus", "info", "network-get-interfaces"}
	agentPosts = []string{"fsfreeze-freeze", "fsfreeze-status", "fsfreeze-thaw", "fstrim", "ping", "shutdown",
		"suspend-disk", "suspend-hybrid", "suspend-ram"}
)

func endpoints() []endpoint {
	re := regexp.MustCompile
	return append([]endpoint{
		{"get", re(`^/cluster/nextid$`), []prop{{name: "vmid", typ: tInt, format: formatVMID}}, (*call).apiNextID, false},
		{"get", re(`^/nodes/([^/]+)/qemu$`), []prop{boolProp("full")}, (*call).apiVMList, false},
		{"get", re(vmPath + `/status/current$`), nil, (*call).apiStatus, false},
		{"get", re(vmPath + `/config$`), []prop{boolProp("current"), {name: "snapshot", format: formatConfigID}}, (*call).apiConfig, false},
		{"get", re(vmPath + `/snapshot$`), nil, (*call).apiSnapshots, false},
		{"get", re(vmPath + `/agent/file-read$`), []prop{{name: "file", required: true}}, (*call).apiFileRead, false},
		{"get", re(vmPath + `/agent/exec-status$`), []prop{{name: "pid", typ: tInt, required: true}}, (*call).apiExecStatus, false},
		{"get", re(vmPath + `/agent/(` + strings.Join(agentGets, "|") + `)$`), nil, (*call).apiAgentCommand, false},
		{"create", re(vmPath + `/agent/file-write$`), []prop{{name: "file", required: true},
			{name: "content", required: true, maxLen: 61440}, boolProp("encode")}, (*call).apiFileWrite, false},
		{"create", re(vmPath + `/agent/exec$`), []prop{{name: "command", array: true, required: true},
			{name: "input-data", maxLen: 65536}}, (*call).apiExec, false},
		{"create", re(vmPath + `/agent/(` + strings.Join(agentPosts, "|") + `)$`), nil, (*call).apiAgentCommand, false},
		{"create", re(`^/nodes/([^/]+)/storage/([^/]+)/download-url$`), downloadURLProps(), (*call).apiDownloadURL, false},
		{"get", re(`^/nodes/([^/]+)/tasks/([^/]+)/status$`), nil, (*call).apiTaskStatus, false},
		{"get", re(`^/nodes/([^/]+)/tasks/([^/]+)/log$`), []prop{intProp("start", 0), intProp("limit", 0), boolProp("download")}, (*call).apiTaskLog, false},
	}, firewallEndpoints()...)
}

var pveshMethods = map[string]bool{"get": true, "create": true, "set": true, "delete": true}

func (c *call) pvesh(args []string) int {
	if len(args) < 2 || !pveshMethods[args[0]] {
		fmt.Fprintln(c.stderr, "USAGE: pvesh <get|create|set|delete> <api_path> [OPTIONS] [FORMAT_OPTIONS]")
		return exitFail
	}
	method, path := args[0], "/"+strings.Trim(args[1], "/")
	for _, ep := range endpoints() {
		m := ep.pattern.FindStringSubmatch(path)
		if m == nil || ep.method != method {
			continue
		}
		cmd := &command{
			path:  method + " " + path,
			props: append(append([]prop{}, ep.props...), prop{name: "output-format", enum: []string{"text", "json", "json-pretty", "yaml"}}, boolProp("noborder"), boolProp("noheader"), boolProp("human-readable")),
			usage: fmt.Sprintf("pvesh %s %s [OPTIONS] [FORMAT_OPTIONS]", method, args[1]),
		}
		p, err := cmd.parse(args[2:], c.stderr)
		if err != nil {
			return report(c.stderr, err)
		}
		if len(m) > 1 && !ep.anyNode && m[1] != c.Node && m[1] != "localhost" {
			return report(c.stderr, errorf("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", m[1], m[1]))
		}
		res, err := ep.run(c, m, p)
		var pe *paramError
		if errors.As(err, &pe) && pe.usage == "" {
			pe.usage = cmd.usage
		}
		if err != nil {
			return report(c.stderr, err)
		}
		c.printAPI(res, p.get("output-format"))
		return exitOK
	}
	fmt.Fprintf(c.stderr, "No '%s' handler defined for '%s'\n", method, path)
	return 1
}

// printAPI prints a result in pvesh's output format; null prints nothing.
func (c *call) printAPI(res any, format string) {
	if res == nil {
		return
	}
	switch format {
	case "json":
		fmt.Fprintln(c.stdout, perlJSONCompact(res))
		return
	case "", "text":
		switch v := res.(type) {
		case string:
			fmt.Fprintln(c.stdout, v)
			return
		case int, json.Number:
			fmt.Fprintln(c.stdout, v)
			return
		}
	}
	fmt.Fprint(c.stdout, perlJSONPretty(res))
}

func pathVMID(m []string) int {
	id, _ := strconv.Atoi(m[2])
	return id
}

func (c *call) apiNextID(_ []string, p *params) (any, error) {
	ids, err := c.vmids()
	if err != nil {
		return nil, err
	}
	used := map[int]bool{}
	for _, id := range ids {
		used[id] = true
	}
	if p.has("vmid") {
		id := vmidOf(p, "vmid")
		if used[id] {
			return nil, badParam("vmid", fmt.Sprintf("VM %d already exists", id))
		}
		// The parameter comes back as the string it was given.
		return p.get("vmid"), nil
	}
	for id := 100; id < 1000000; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return nil, errors.New("unable to get any free VMID")
}

func (c *call) apiVMList(_ []string, _ *params) (any, error) {
	ids, err := c.vmids()
	if err != nil {
		return nil, err
	}
	list := []any{}
	for _, id := range ids {
		conf, err := c.readConfig(id)
		if err != nil {
			return nil, err
		}
		st, err := c.vmStatus(id, conf)
		if err != nil {
			return nil, err
		}
		for _, k := range []string{"qmpstatus", "running-machine", "running-qemu"} {
			delete(st, k)
		}
		list = append(list, st)
	}
	return list, nil
}

func (c *call) apiStatus(m []string, _ *params) (any, error) {
	vmid := pathVMID(m)
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return nil, err
	}
	st, err := c.vmStatus(vmid, conf)
	if err != nil {
		return nil, err
	}
	st["ha"] = map[string]any{"managed": 0}
	if agentEnabled(conf.main) {
		st["agent"] = 1
	}
	return st, nil
}

func (c *call) apiConfig(m []string, p *params) (any, error) {
	vmid := pathVMID(m)
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return nil, err
	}
	shown, err := conf.shown(p.flag("current", false), p.get("snapshot"))
	if err != nil {
		return nil, err
	}
	out := map[string]any{"digest": conf.digest}
	for k, v := range shown {
		if k == "cipassword" {
			v = "**********"
		}
		out[k] = v
	}
	return out, nil
}

func (c *call) apiSnapshots(m []string, _ *params) (any, error) {
	vmid := pathVMID(m)
	conf, err := c.loadConfig(vmid)
	if err != nil {
		return nil, err
	}
	list := []any{}
	for _, name := range sortedKeys(conf.snaps) {
		s := conf.snaps[name]
		e := map[string]any{"name": name, "description": s["description"], "vmstate": 0}
		if t, err := strconv.ParseInt(s["snaptime"], 10, 64); err == nil {
			e["snaptime"] = t
		}
		if par := s["parent"]; par != "" {
			e["parent"] = par
		}
		list = append(list, e)
	}
	running, err := c.isRunning(vmid)
	if err != nil {
		return nil, err
	}
	cur := map[string]any{"name": "current", "description": "You are here!", "digest": conf.digest, "running": map[bool]int{true: 1, false: 0}[running]}
	if par := conf.main["parent"]; par != "" {
		cur["parent"] = par
	}
	return append(list, cur), nil
}

const (
	fileReadChunk = 1 << 20
	fileReadMax   = 16 << 20
)

func (c *call) apiFileRead(m []string, p *params) (any, error) {
	vmid := pathVMID(m)
	if _, err := c.agentAvailable(vmid); err != nil {
		return nil, err
	}
	var handle json.Number
	if err := c.agentCall(vmid, "guest-file-open", map[string]any{"path": p.get("file")}, &handle); err != nil {
		return nil, err
	}
	var content []byte
	truncated := false
	for {
		var chunk struct {
			Count int    `json:"count"`
			Buf   string `json:"buf-b64"`
			EOF   bool   `json:"eof"`
		}
		if err := c.agentCall(vmid, "guest-file-read", map[string]any{"handle": handle, "count": fileReadChunk}, &chunk); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(chunk.Buf)
		if err != nil {
			return nil, errorf("Agent error: guest-file-read: %v", err)
		}
		content = append(content, b...)
		if chunk.EOF || chunk.Count == 0 {
			break
		}
		if len(content) >= fileReadMax {
			truncated = true
			break
		}
	}
	if err := c.agentCall(vmid, "guest-file-close", map[string]any{"handle": handle}, nil); err != nil {
		return nil, err
	}
	res := map[string]any{"bytes-read": len(content), "content": latin1(content)}
	if truncated {
		res["truncated"] = 1
		fmt.Fprintf(c.stderr, "agent file-read: reached maximum read size: %d bytes. output might be truncated.\n", fileReadMax)
	}
	return res, nil
}

func (c *call) apiFileWrite(m []string, p *params) (any, error) {
	vmid := pathVMID(m)
	if _, err := c.agentAvailable(vmid); err != nil {
		return nil, err
	}
	content := p.get("content")
	if p.flag("encode", true) {
		// The string goes through Perl's encode_base64: characters up
		// to U+00FF become single bytes, anything wider dies.
		raw, ok := fromLatin1(content)
		if !ok {
			return nil, errorf("Wide character in subroutine entry at /usr/share/perl5/PVE/API2/Qemu/Agent.pm line 470.")
		}
		content = base64.StdEncoding.EncodeToString(raw)
	}
	var handle json.Number
	if err := c.agentCall(vmid, "guest-file-open", map[string]any{"path": p.get("file"), "mode": "wb"}, &handle); err != nil {
		return nil, err
	}
	if err := c.agentCall(vmid, "guest-file-write", map[string]any{"handle": handle, "buf-b64": content}, nil); err != nil {
		return nil, err
	}
	return nil, c.agentCall(vmid, "guest-file-close", map[string]any{"handle": handle}, nil)
}

func (c *call) apiExec(m []string, p *params) (any, error) {
	vmid := pathVMID(m)
	if _, err := c.agentAvailable(vmid); err != nil {
		return nil, err
	}
	input, hasInput := p.vals["input-data"]
	pid, err := c.agentExec(vmid, p.lists["command"], []byte(input), hasInput)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pid": pid}, nil
}

func (c *call) apiExecStatus(m []string, p *params) (any, error) {
	vmid := pathVMID(m)
	if _, err := c.agentAvailable(vmid); err != nil {
		return nil, err
	}
	return c.execStatus(vmid, json.Number(p.get("pid")))
}

func (c *call) apiAgentCommand(m []string, _ *params) (any, error) {
	res, err := c.agentCommand(pathVMID(m), m[3])
	if err != nil {
		return nil, err
	}
	return map[string]any{"result": res}, nil
}
