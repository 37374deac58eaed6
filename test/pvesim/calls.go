package pvesim

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Call counting for the benchmarks (test/bench): while
// /etc/pvesim/count_calls exists, every invocation appends one line to
// /var/log/pvesim/calls.log, so a benchmark can count how many qm/pvesh
// processes a phoenix run started and which VM state it read.
const (
	countSwitch = "etc/pvesim/count_calls"
	callsLog    = "var/log/pvesim/calls.log"
	// maxArgLen keeps a line short: file-write content and scripts are long.
	maxArgLen = 64
)

// countCall appends "prog arg…" to the calls log when counting is on. It
// never fails the call: a benchmark that misses a line sees a wrong count.
func (c *call) countCall(prog string, args []string) {
	if _, err := os.Stat(c.path(countSwitch)); err != nil {
		return
	}
	line := callLine(prog, args)
	if err := os.MkdirAll(filepath.Dir(c.path(callsLog)), 0o755); err != nil {
		return
	}
	// O_APPEND: concurrent qm processes each add whole lines.
	f, err := os.OpenFile(c.path(callsLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	_, _ = f.WriteString(line)
	_ = f.Close()
}

// callLine is one log line: the program and its arguments separated by
// spaces; an argument with spaces or control characters is Go-quoted, a long
// one cut to maxArgLen runes.
func callLine(prog string, args []string) string {
	var b strings.Builder
	b.WriteString(prog)
	for _, a := range args {
		if utf8.RuneCountInString(a) > maxArgLen {
			a = string([]rune(a)[:maxArgLen]) + "…"
		}
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }) {
			a = strconv.Quote(a)
		}
		b.WriteByte(' ')
		b.WriteString(a)
	}
	b.WriteByte('\n')
	return b.String()
}
