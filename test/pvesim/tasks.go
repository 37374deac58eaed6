package pvesim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Worker tasks of the API (pvesh): PVE::RESTEnvironment::fork_worker in
// CLI mode. The task runs in the foreground; its output goes to stdout and
// to the task log /var/log/pve/tasks/<X>/<UPID>, which ends with "TASK OK"
// or "TASK ERROR: <message>"; a failure also goes to stderr as one line.
// The result is the UPID, and pvesh exits 0 either way.

// upid is a task id: UPID:node:pid:pstart:starttime:type:id:user:.
type upid struct {
	node              string
	pid, pstart       int64
	starttime         int64
	typ, id, user     string
	raw, logSubfolder string
}

var upidRE = regexp.MustCompile(`^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$`)

// parseUPID is upid_decode.
func parseUPID(s string) (*upid, error) {
	m := upidRE.FindStringSubmatch(s)
	if m == nil {
		return nil, errorf("unable to parse worker upid '%s'", s)
	}
	hex := func(h string) int64 { n, _ := strconv.ParseInt(h, 16, 64); return n }
	return &upid{node: m[1], pid: hex(m[3]), pstart: hex(m[4]), starttime: hex(m[5]), typ: m[6], id: m[7], user: m[8],
		raw: s, logSubfolder: m[5][7:8]}, nil
}

func (s *Sim) newUPID(typ, id string) *upid {
	u := &upid{node: s.Node, pid: int64(s.PID), pstart: s.PStart, starttime: s.Now().Unix(), typ: typ, id: encodeTaskID(id), user: "root@pam"}
	u.raw = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", u.node, u.pid, u.pstart, u.starttime, u.typ, u.id, u.user)
	u.logSubfolder = fmt.Sprintf("%08X", u.starttime)[7:8]
	return u
}

// encodeTaskID is encode_text: control and high-bit characters, ':' and
// '%' URI-escaped.
func encodeTaskID(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e || c == ':' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (s *Sim) taskLog(u *upid) string {
	return s.path("var/log/pve/tasks", u.logSubfolder, u.raw)
}

// runTask runs fn as the worker task u: its output to stdout and the task
// log, its failure as one line on stderr and the log's last line.
func (c *call) runTask(u *upid, fn func(out io.Writer) error) error {
	path := c.taskLog(u)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("unable to create output file '%s' - %w", path, err)
	}
	defer f.Close()
	if ferr := fn(io.MultiWriter(c.stdout, f)); ferr != nil {
		msg := strings.ReplaceAll(strings.TrimRight(ferr.Error(), "\n"), "\n", " ")
		fmt.Fprintln(c.stderr, msg)
		_, err = fmt.Fprintf(f, "\nTASK ERROR: %s\n", msg)
		return err
	}
	_, err = fmt.Fprint(f, "TASK OK\n")
	return err
}

// apiTaskStatus is GET /nodes/{node}/tasks/{upid}/status.
func (c *call) apiTaskStatus(m []string, _ *params) (any, error) {
	u, err := parseUPID(m[2])
	if err != nil {
		return nil, err
	}
	res := map[string]any{"upid": u.raw, "node": u.node, "pid": u.pid, "pstart": u.pstart, "starttime": u.starttime,
		"type": u.typ, "id": u.id, "user": u.user, "status": "stopped"}
	res["exitstatus"] = c.taskExitStatus(u)
	return res, nil
}

// taskExitStatus is upid_read_status: the task log's last line.
func (c *call) taskExitStatus(u *upid) string {
	raw, err := os.ReadFile(c.taskLog(u))
	if err != nil {
		return "unable to open file - " + syscallText(err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	last := lines[len(lines)-1]
	switch {
	case last == "TASK OK":
		return "OK"
	case strings.HasPrefix(last, "TASK ERROR: "):
		return strings.TrimPrefix(last, "TASK ERROR: ")
	case strings.HasPrefix(last, "TASK WARNINGS: "):
		return strings.TrimPrefix(last, "TASK ")
	}
	return "unexpected status"
}

// apiTaskLog is GET /nodes/{node}/tasks/{upid}/log: lines {n, t} from
// start (0-based), at most limit (50).
func (c *call) apiTaskLog(m []string, p *params) (any, error) {
	u, err := parseUPID(m[2])
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(c.taskLog(u))
	if err != nil {
		return nil, errorf("unable to open file - %s", syscallText(err))
	}
	start, limit := p.num("start", 0), p.num("limit", 50)
	list := []any{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := int64(0); sc.Scan(); n++ {
		if n < start || limit > 0 && n >= start+limit {
			continue
		}
		list = append(list, map[string]any{"n": n + 1, "t": sc.Text()})
	}
	return list, nil
}
