package inventory

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong in a config or inventory file. Pointer is a
// JSON pointer (also used for inventory.yml paths, e.g. /nodes/pve1/port);
// Line and Column are 1-based, 0 when unknown.
type Problem struct {
	Pointer string
	Line    int
	Column  int
	Message string
}

// ConfigError is every problem found in one file, in file order.
type ConfigError struct {
	File     string
	Problems []Problem
}

// Error prints one problem per line: file:line:col: pointer: message.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = located(e.File, p.Pointer, p.Line, p.Column, p.Message)
	}
	return strings.Join(lines, "\n")
}

// String prints the warning like a problem: file:line:col: pointer: message.
func (w Warning) String() string {
	return located(w.File, w.Pointer, w.Line, w.Column, w.Message)
}

func located(file, pointer string, line, col int, msg string) string {
	var b strings.Builder
	b.WriteString(file)
	if line > 0 {
		fmt.Fprintf(&b, ":%d:%d", line, col)
	}
	b.WriteString(": ")
	if pointer != "" {
		b.WriteString(pointer)
		b.WriteString(": ")
	}
	b.WriteString(msg)
	return b.String()
}
