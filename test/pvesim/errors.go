package pvesim

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Exit codes. qm dies through Perl's die, which exits with errno when set
// (ENOENT = 2 after a failed config lookup) and 255 otherwise.
const (
	exitOK       = 0
	exitNoConfig = 2
	exitFail     = 255
)

// paramError is PVE's HTTP-400 exception: a first line, optional
// "param: reason" lines and the short usage of the command.
type paramError struct {
	msg    string
	params map[string]string
	usage  string
}

func (e *paramError) Error() string { return "400 " + e.msg }

func badParams(params map[string]string) *paramError {
	return &paramError{msg: "Parameter verification failed.", params: params}
}

func badParam(name, reason string) *paramError {
	return badParams(map[string]string{name: reason})
}

func badRequest(msg string) *paramError { return &paramError{msg: msg} }

// write prints the block exactly as PVE::Exception stringifies it.
func (e *paramError) write(w io.Writer) {
	fmt.Fprintf(w, "400 %s\n", e.msg)
	keys := make([]string, 0, len(e.params))
	for k := range e.params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %s\n", k, e.params[k])
	}
	if e.usage != "" {
		fmt.Fprintln(w, e.usage)
	}
}

// exitError is a plain error message with its own exit code.
type exitError struct {
	msg  string
	code int
}

func (e *exitError) Error() string { return e.msg }

func errorf(format string, a ...any) error {
	return &exitError{msg: fmt.Sprintf(format, a...), code: exitFail}
}

// taskError is a failed worker task: qm prints it on one line and exits 255.
type taskError struct{ err error }

func (e *taskError) Error() string { return e.err.Error() }
func (e *taskError) Unwrap() error { return e.err }

// report prints err the way the qm CLI does and returns the exit code.
func report(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var pe *paramError
	if errors.As(err, &pe) {
		pe.write(w)
		return exitFail
	}
	var te *taskError
	if errors.As(err, &te) {
		// Worker errors have their newlines folded into spaces.
		fmt.Fprintln(w, strings.ReplaceAll(strings.TrimRight(te.Error(), "\n"), "\n", " "))
		return exitFail
	}
	msg := strings.TrimRight(err.Error(), "\n")
	fmt.Fprintln(w, msg)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFail
}
