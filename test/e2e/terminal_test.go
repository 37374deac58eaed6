package e2e

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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/phoenix-hv/phoenix/test/rig"
)

// slowFeature prints a line every half second for about six seconds: long
// enough for the live view to show it running, with its output, over the
// feature's polls.
const slowFeature = `#!/bin/sh
set -eu
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "slow step $i of 12"; sleep 0.5; done
`

// text runs phoenix as a person does, with stdout on a pseudo-terminal of
// 120×40 cells (tty) or on a pipe, and returns what it printed.
func (l *lab) text(t *testing.T, tty bool, env []string, args ...string) (out string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	full := append([]string{"--config", l.config, "--inventory", l.inventory}, args...)
	cmd := exec.CommandContext(ctx, phoenixBinary(t), full...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var err error
	if tty {
		var ptmx *os.File
		ptmx, err = pty.StartWithSize(cmd, &pty.Winsize{Cols: 120, Rows: 40})
		if err != nil {
			t.Fatalf("start phoenix on a pseudo-terminal: %v", err)
		}
		var b bytes.Buffer
		io.Copy(&b, ptmx) // until the terminal closes (EIO) with the process
		ptmx.Close()
		err = cmd.Wait()
		out = b.String()
	} else {
		var b bytes.Buffer
		cmd.Stdout = &b
		err = cmd.Run()
		out = b.String()
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("phoenix %v: %v", args, err)
	}
	t.Logf("phoenix %s (terminal %v): exit %d\n%s\nstderr:\n%s", strings.Join(args, " "), tty, code, out, stderr.String())
	noReferences(t, args, out+stderr.String())
	if strings.Contains(out+stderr.String(), password) {
		t.Errorf("phoenix %v printed the VM's password", args)
	}
	return out, code
}

// escapes are the control sequences phoenix writes on a terminal.
var escapes = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

// TestTerminalOutput is the run a person watches: on a terminal, the
// running step with its timer and its latest output line while a slow
// feature runs, coloured result lines, the recap table; piped, the same
// steps as plain lines without any escape code. Then the fleet at a
// glance: phoenix status, with --check and as JSON.
func TestTerminalOutput(t *testing.T) {
	t.Parallel()
	l := newLab(t, func(vm *rig.ConfigVM) { vm.Features = append(vm.Features, "slow") })
	if err := os.WriteFile(filepath.Join(l.features, "slow.sh"), []byte(slowFeature), 0o755); err != nil {
		t.Fatal(err)
	}
	// --all: the template 9000 is skipped as a whole, 8101 is created.
	out, code := l.text(t, true, []string{"TERM=xterm-256color"}, "create", "--all", "--feature-dir", l.features)
	if code != 0 {
		t.Fatalf("create on a terminal: exit %d", code)
	}
	if !strings.Contains(out, "\x1b[2K") || !strings.Contains(out, "\x1b[33m") {
		t.Error("no redraws or no colours on a colour terminal")
	}
	plain := strings.ReplaceAll(escapes.ReplaceAllString(out, ""), "\r", "")
	result := regexp.MustCompile(`(?m)^8101  feature slow\s+changed\s+(agent|ssh)\s+[\d.]+s  ran feature slow`).FindStringIndex(plain)
	if result == nil {
		t.Fatalf("no result line for feature slow, in the past tense:\n%s", plain)
	}
	// Before its result, the terminal showed the feature running: its
	// timer counting, its latest output line beside it.
	var seconds []float64
	for _, m := range regexp.MustCompile(`8101  feature slow\s+(\d+\.\d)s  slow step (\d+) of 12`).FindAllStringSubmatch(plain[:result[0]], -1) {
		s, _ := strconv.ParseFloat(m[1], 64)
		seconds = append(seconds, s)
	}
	if len(seconds) < 3 || seconds[len(seconds)-1] < 2 || seconds[0] >= seconds[len(seconds)-1] {
		t.Errorf("while the feature ran the terminal showed its timer at %v s, want it counting with its output", seconds)
	}
	if !regexp.MustCompile(`VMID\s+NAME\s+RESULT\s+OK\s+CHANGED\s+FAILED\s+SKIPPED\s+TIME\s+NOTE\n9000\s+debian-12-cloud\s+ok\s.*\n8101\s+phoenix-rig-test\s+changed\s`).MatchString(plain[result[1]:]) {
		t.Errorf("no recap table at the end:\n%s", plain[result[1]:])
	}

	// Piped, a second run prints plain lines: nothing changes, nothing
	// needs a terminal to be read.
	out, code = l.text(t, false, []string{"TERM=xterm-256color"}, "create", fmt.Sprint(vmid), "--feature-dir", l.features)
	if code != 0 || strings.Contains(out, "\x1b") {
		t.Errorf("piped create: exit %d, escape codes in %q", code, out)
	}
	for _, want := range []string{`(?m)^8101  feature slow\s+ok\s+(agent|ssh)\s`, `(?m)^8101  snapshot pre-features\s+skipped\s+no pre-features snapshot configured`,
		`(?m)^8101: ok=\d+ changed=0 failed=0 skipped=\d+ \(`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("piped create has no line like %q", want)
		}
	}
	// A plan in words, on a terminal without colours.
	out, code = l.text(t, true, []string{"TERM=xterm-256color", "NO_COLOR=1"}, "plan", fmt.Sprint(vmid), "--diff", "--feature-dir", l.features)
	if code != 0 || strings.Contains(out, "\x1b[33m") || !strings.Contains(out, "dry run: 0 to change") {
		t.Errorf("plan --diff with NO_COLOR: exit %d:\n%q", code, out)
	}

	// The fleet at a glance.
	out, code = l.text(t, false, nil, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^9000\s+debian-12-cloud\s+pve\s+stopped\s+yes$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^8101\s+phoenix-rig-test\s+pve\s+running\s+no$`).MatchString(out) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	out, code = l.text(t, false, nil, "status", "--check", "--feature-dir", l.features)
	if code != 0 || !regexp.MustCompile(`(?m)^8101\s+phoenix-rig-test\s+pve\s+running\s+no\s+none$`).MatchString(out) {
		t.Errorf("status --check of a converged VM: exit %d\n%s", code, out)
	}
	// A config that now wants more: the check names the step, nothing changes.
	l.writeConfig(t, func(vm *rig.ConfigVM) {
		vm.Features = []string{"hello", "slow"}
		vm.UserConfig.Password = password
		vm.Cores = 2
	})
	out, code = l.text(t, false, nil, "--output", "json", "status", "8101", "--check", "--feature-dir", l.features)
	var rows []struct {
		VMID    int      `json:"vmid"`
		Exists  bool     `json:"exists"`
		Status  string   `json:"status"`
		Pending []string `json:"pending"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 || len(rows) != 1 ||
		rows[0].VMID != vmid || !rows[0].Exists || rows[0].Status != "running" || !slices.Equal(rows[0].Pending, []string{"core config"}) {
		t.Errorf("status --check --output json after a config change: exit %d, %v, %+v", code, err, rows)
	}
}
