package pvesim

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestAgentChecks(t *testing.T) {
	h := newHarness(t).withVMs()
	h.write("etc/pve/qemu-server/100.conf", "memory: 512\nname: noagent\n")
	h.write("etc/pve/qemu-server/101.conf", "agent: 0\nmemory: 512\nname: agentoff\n")
	h.step("", "qm", "guest", "cmd", "404", "ping")
	h.step("", "qm", "guest", "cmd", "8101", "ping")
	h.step("", "qm", "start", "100")
	h.step("", "qm", "guest", "cmd", "100", "ping")
	h.step("", "qm", "start", "101")
	h.step("", "qm", "guest", "cmd", "101", "ping")
	h.step("", "qm", "start", "8101")
	h.step("", "qm", "guest", "cmd", "8101", "ping")
	h.step("", "qm", "guest", "exec", "8101", "--", "/bin/true")
	h.step("", "qm", "guest", "exec-status", "8101", "1")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/agent/file-read", "--file", "/etc/hostname", "--output-format", "json")
	q := startFakeQGA(t, h.sim.qgaSocket(8101), "web01")
	q.set(func(q *fakeQGA) { q.silent = true })
	h.step("", "qm", "guest", "cmd", "8101", "ping")
	q.set(func(q *fakeQGA) { q.silent = false })
	h.step("", "qm", "guest", "cmd", "8101", "ping")
	h.step("", "qm", "guest", "cmd", "8101", "bogus")
	// A pending agent option does not count until the next start.
	h.step("", "qm", "set", "100", "--agent", "1")
	h.step("", "qm", "guest", "cmd", "100", "ping")
	h.backend.crash("phoenix-rig-t1-vm-8101")
	h.step("", "qm", "guest", "cmd", "8101", "ping")
	h.golden("agent_checks")
}

func TestGuestCmd(t *testing.T) {
	h := newHarness(t).withVMs()
	q := h.startWithAgent(8101, "web01")
	h.step("", "qm", "guest", "cmd", "8101", "ping")
	h.step("", "qm", "agent", "8101", "get-host-name")
	h.step("", "qm", "guest", "cmd", "8101", "get-osinfo")
	h.step("", "qm", "guest", "cmd", "8101", "network-get-interfaces")
	h.step("", "qm", "guest", "cmd", "8101", "info")
	h.step("", "qm", "guest", "cmd", "8101", "fsfreeze-status")
	h.step("", "qm", "guest", "cmd", "8101", "shutdown")
	// qemu-ga may hold output of an earlier client: the sync skips it.
	q.set(func(q *fakeQGA) { q.stale = true })
	h.step("", "qm", "guest", "cmd", "8101", "get-host-name")
	h.golden("guest_cmd")
	got := strings.Join(q.commands(), " ")
	if !strings.HasPrefix(got, "guest-sync-delimited guest-ping guest-sync-delimited guest-ping") {
		t.Errorf("agent saw %q; want a sync before every command", got)
	}
}

// pidRE finds the pid of `qm guest exec --synchronous 0` output.
var pidRE = regexp.MustCompile(`"pid" : (\d+)`)

func TestGuestExec(t *testing.T) {
	h := newHarness(t).withVMs()
	h.startWithAgent(8101, "web01")
	h.step("", "qm", "guest", "exec", "8101", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
	h.step("", "qm", "guest", "exec", "8101", "--", "/bin/true")
	h.step("", "qm", "guest", "exec", "8101", "--", "/bin/sh", "-c", `printf 'h\303\244\377\n'`)
	h.step("", "qm", "guest", "exec", "8101", "--", "/bin/sh", "-c", "kill -9 $$")
	h.step("", "qm", "guest", "exec", "8101", "--", "/no/such/program", "arg")
	h.step("", "qm", "guest", "exec", "8101")
	h.step("", "qm", "guest", "exec", "8101", "--synchronous", "0", "--timeout", "5", "--", "/bin/true")
	h.step("line one\nline two\n", "qm", "guest", "exec", "8101", "--pass-stdin", "1", "--", "/bin/cat")
	h.step(strings.Repeat("x", 1<<20+1), "qm", "guest", "exec", "8101", "--pass-stdin", "1", "--", "/bin/cat")

	// Asynchronous: {"exited" : 0} while it runs, the result once, then
	// qemu-ga has forgotten the pid.
	r := h.step("", "qm", "guest", "exec", "8101", "--synchronous", "0", "--", "/bin/sh", "-c", "sleep 1; echo done")
	m := pidRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no pid in %q", r.stdout)
	}
	h.step("", "qm", "guest", "exec-status", "8101", m[1])
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := h.run("", "qm", "guest", "exec-status", "8101", m[1])
		if strings.Contains(r.stdout, `"exited" : 1`) {
			fmt.Fprintf(&h.log, "(polled until exited)\n--- stdout\n%s--- exit %d\n\n", r.stdout, r.code)
			break
		}
		if r.code != 0 || time.Now().After(deadline) {
			t.Fatalf("exec-status: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.step("", "qm", "guest", "exec-status", "8101", m[1])

	// Synchronous with a timeout: the pid comes back, exit 0.
	h.step("", "qm", "guest", "exec", "8101", "--timeout", "1", "--", "/bin/sleep", "3")
	h.golden("guest_exec")
}

func TestPvesh(t *testing.T) {
	h := newHarness(t)
	h.step("", "pvesh", "get", "/cluster/nextid")
	h.withVMs()
	h.write("etc/pve/qemu-server/100.conf", "memory: 512\n")
	h.step("", "pvesh", "get", "/cluster/nextid", "--output-format", "json")
	h.step("", "pvesh", "get", "/cluster/nextid", "--vmid", "8102", "--output-format", "json")
	h.step("", "pvesh", "get", "/cluster/nextid", "--vmid", "8101")
	h.step("", "pvesh", "get", "/nodes/pve/qemu", "--output-format", "json")
	h.step("", "pvesh", "get", "/nodes/elsewhere/qemu", "--output-format", "json")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/config", "--output-format", "json")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/snapshot", "--output-format", "json")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/nothing")
	h.step("", "pvesh", "get", "/nodes/pve/qemu", "--bogus", "1")
	q := h.startWithAgent(8101, "web01")
	h.step("", "pvesh", "get", "/nodes/localhost/qemu/8101/status/current", "--output-format", "json-pretty")
	h.step("", "pvesh", "create", "/nodes/localhost/qemu/8101/agent/file-write", "--file", "/etc/myapp.conf", "--content", "key = \"välue\"\n")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/agent/file-read", "--file", "/etc/myapp.conf", "--output-format", "json")
	if got, _ := os.ReadFile(filepath.Join(q.root, "etc/myapp.conf")); string(got) != "key = \"v\xe4lue\"\n" {
		t.Errorf("file-write with --encode 1 wrote %q; want Latin-1 bytes", got)
	}
	h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/file-write", "--file", "/etc/utf8.txt", "--encode", "0", "--content", "aMOkCg==")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/agent/file-read", "--file", "/etc/utf8.txt", "--output-format", "json")
	h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/file-write", "--file", "/etc/x", "--content", "snow \u2603")
	h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/file-write", "--file", "/etc/x", "--content", strings.Repeat("a", 61441))
	h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/file-write", "--file", "/etc/x", "--content", strings.Repeat("ä", 61440))
	h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/file-write", "--file", "/missing/dir/x", "--content", "x")
	h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/file-write", "--file", "/etc/x")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/agent/file-read", "--file", "/etc/nope", "--output-format", "json")
	r := h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/exec", "--command", "/bin/sh", "--command", "-c", "--command", "echo hi",
		"--output-format", "json")
	pid := regexp.MustCompile(`"pid":(\d+)`).FindStringSubmatch(r.stdout)
	if pid == nil {
		t.Fatalf("no pid in %q", r.stdout)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		r := h.run("", "pvesh", "get", "/nodes/pve/qemu/8101/agent/exec-status", "--pid", pid[1], "--output-format", "json")
		if strings.Contains(r.stdout, `"exited":1`) {
			fmt.Fprintf(&h.log, "(polled exec-status until exited)\n--- stdout\n%s--- exit %d\n\n", r.stdout, r.code)
			break
		}
		if r.code != 0 || time.Now().After(deadline) {
			t.Fatalf("exec-status: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.step("", "pvesh", "create", "/nodes/pve/qemu/8101/agent/ping", "--output-format", "json")
	h.step("", "pvesh", "get", "/nodes/pve/qemu/8101/agent/get-host-name", "--output-format", "json")
	h.golden("pvesh")
}

func TestFileReadLimit(t *testing.T) {
	h := newHarness(t).withVMs()
	q := h.startWithAgent(8101, "web01")
	big := make([]byte, fileReadMax+5)
	for i := range big {
		big[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(q.root, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	r := h.run("", "pvesh", "get", "/nodes/pve/qemu/8101/agent/file-read", "--file", "/big", "--output-format", "json")
	if r.code != 0 || r.stderr != "agent file-read: reached maximum read size: 16777216 bytes. output might be truncated.\n" {
		t.Fatalf("file-read of 16 MiB + 5: exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, `{"bytes-read":16777216,"content":"`) || !strings.HasSuffix(r.stdout, `","truncated":1}`+"\n") {
		t.Errorf("file-read result starts %q ends %q", r.stdout[:40], r.stdout[len(r.stdout)-20:])
	}
}
