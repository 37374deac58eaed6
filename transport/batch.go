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
	return batch(ctx, r, lines, BatchScript(lines))
}

// BatchParallel is Batch with the lines run at the same time, for reads
// that do not depend on each other (a VM's state, a guest's facts): the
// round trip takes as long as its slowest line, not all of them together.
func BatchParallel(ctx context.Context, r Runner, lines []string) ([]Result, error) {
	return batch(ctx, r, lines, BatchParallelScript(lines))
}

func batch(ctx context.Context, r Runner, lines []string, script string) ([]Result, error) {
	if len(lines) == 0 {
		return nil, nil
	}
	// Batches read facts: their lines are probes.
	res, err := r.Run(ctx, Cmd{Line: script, Probe: true})
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
	b.WriteString(batchHead)
	b.WriteString(`r() { sh -c "$1" >"$t/o" 2>"$t/e" </dev/null; c=$?; `)
	b.WriteString(`printf '%d %d %d\n' "$c" "$(wc -c <"$t/o")" "$(wc -c <"$t/e")"; cat "$t/o" "$t/e"; }; `)
	for _, l := range lines {
		b.WriteString("r ")
		b.WriteString(Quote(l))
		b.WriteString("; ")
	}
	return strings.TrimSuffix(b.String(), " ")
}

// batchHead makes the batch's temp directory and the traps that remove it.
const batchHead = `t=$(mktemp -d) || exit 125; trap 'rm -rf "$t"' EXIT; ` +
	`trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM; `

// BatchParallelScript is the shell line BatchParallel sends: each line in
// the background with its output in files, then the results in order, as
// BatchScript prints them. Its temp directory goes as BatchScript's does
// (the lines, in its process group, get the same signals).
func BatchParallelScript(lines []string) string {
	var b strings.Builder
	b.WriteString(batchHead)
	b.WriteString(`r() { sh -c "$1" >"$t/$2o" 2>"$t/$2e" </dev/null; echo $? >"$t/$2c"; }; `)
	for i, l := range lines {
		fmt.Fprintf(&b, "r %s %d & ", Quote(l), i)
	}
	b.WriteString(`wait; for i in`)
	for i := range lines {
		fmt.Fprintf(&b, " %d", i)
	}
	b.WriteString(`; do printf '%d %d %d\n' "$(cat "$t/${i}c")" "$(wc -c <"$t/${i}o")" "$(wc -c <"$t/${i}e")"; cat "$t/${i}o" "$t/${i}e"; done`)
	return b.String()
}

// ParseBatch splits the output of BatchScript or BatchParallelScript into n
// Results.
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
