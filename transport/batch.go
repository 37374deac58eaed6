package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Batch runs several command lines in one round trip and returns one Result
// per line, in order. Each line runs in its own `sh -c`, so one failing does
// not stop the others. Output is framed by byte counts, so any bytes survive.
// This is how phoenix reads a VM's state (qm config, status, snapshots) or a
// guest's facts with a single remote command.
func Batch(ctx context.Context, r Runner, lines []string) ([]Result, error) {
	if len(lines) == 0 {
		return nil, nil
	}
	res, err := r.Run(ctx, Cmd{Line: BatchScript(lines)})
	var ee *ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, err
	}
	out, perr := ParseBatch(res.Stdout, len(lines))
	if perr != nil {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("batch of %d commands: %w", len(lines), perr)
	}
	return out, nil
}

// BatchScript is the shell line Batch sends. Its temp directory is removed
// however the script ends: the EXIT trap runs on a normal end and, through
// the signal traps, when it is stopped (SIGTERM, SIGINT), its connection
// hangs up or its output breaks (SIGPIPE). Only SIGKILL leaves it.
func BatchScript(lines []string) string {
	var b strings.Builder
	b.WriteString(`t=$(mktemp -d) || exit 125; trap 'rm -rf "$t"' EXIT; `)
	b.WriteString(`trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM; `)
	b.WriteString(`r() { sh -c "$1" >"$t/o" 2>"$t/e" </dev/null; c=$?; `)
	b.WriteString(`printf '%d %d %d\n' "$c" "$(wc -c <"$t/o")" "$(wc -c <"$t/e")"; cat "$t/o" "$t/e"; }; `)
	for _, l := range lines {
		b.WriteString("r ")
		b.WriteString(Quote(l))
		b.WriteString("; ")
	}
	return strings.TrimSuffix(b.String(), " ")
}

// ParseBatch splits the output of BatchScript into n Results.
func ParseBatch(out []byte, n int) ([]Result, error) {
	br := bufio.NewReader(bytes.NewReader(out))
	results := make([]Result, 0, n)
	for i := 0; i < n; i++ {
		header, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("command %d: missing header", i+1)
		}
		var code, no, ne int
		if _, err := fmt.Sscanf(strings.TrimSpace(header), "%d %d %d", &code, &no, &ne); err != nil {
			return nil, fmt.Errorf("command %d: bad header %q", i+1, header)
		}
		res := Result{ExitCode: code, Stdout: make([]byte, no), Stderr: make([]byte, ne)}
		if _, err := io.ReadFull(br, res.Stdout); err != nil {
			return nil, fmt.Errorf("command %d: short stdout", i+1)
		}
		if _, err := io.ReadFull(br, res.Stderr); err != nil {
			return nil, fmt.Errorf("command %d: short stderr", i+1)
		}
		results = append(results, res)
	}
	return results, nil
}

// Err turns a batch Result into the error Run would have returned for line.
func (r Result) Err(line string) error {
	if r.ExitCode == 0 {
		return nil
	}
	return &ExitError{Line: line, Code: r.ExitCode, Stderr: r.Stderr, Stdout: r.Stdout}
}
