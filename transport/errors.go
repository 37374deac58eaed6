package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// Sentinel errors a caller can act on with errors.Is.
var (
	// ErrUnreachable: nothing answered (refused, no route, dial timeout).
	ErrUnreachable = errors.New("unreachable")
	// ErrAuth: the server answered but refused our credentials. Retryable while a
	// guest is still booting (sshd starts before cloud-init writes the keys).
	ErrAuth = errors.New("authentication refused")
	// ErrHostKeyChanged: the server's key differs from the pinned one. Never retried.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrHostKeyUnknown: no pinned key and the policy is strict.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrReadOnly: a write (Put, or a command not marked as a probe) was
	// attempted while a task checked.
	ErrReadOnly = errors.New("refused: check is read-only")
	// ErrDisconnected: the connection broke while a command ran (e.g. a reboot).
	ErrDisconnected = errors.New("connection lost")
	// ErrAgentUnavailable: the QEMU guest agent cannot be used right now; the
	// caller may fall back to SSH.
	ErrAgentUnavailable = errors.New("guest agent unavailable")
	// ErrStatusUnknown: a command was started (or may have been) and its
	// end was not seen. It is never run again over another channel: it may
	// still be running, or have done its work. See StatusUnknownError.
	ErrStatusUnknown = errors.New("status unknown")
)

// StatusUnknownError is a command that may have started in the guest and
// whose end was not seen (the agent died while it ran, the node connection
// broke). It unwraps to ErrStatusUnknown and to Cause, so a caller still
// sees why (e.g. ErrAgentUnavailable: later commands can go over SSH).
type StatusUnknownError struct {
	Line    string // redacted
	Channel string // "agent vm 8101"
	PID     int    // the guest's pid of the command; 0 when it is not known
	Cause   error
}

func (e *StatusUnknownError) Error() string {
	started, check := "may have started", "its effects"
	if e.PID > 0 {
		started = fmt.Sprintf("started as guest pid %d", e.PID)
		check = fmt.Sprintf("ps -p %d, then its effects", e.PID)
	}
	return fmt.Sprintf("run %q: status unknown: %s through %s, then %v; it may still be running or have finished, so it is not run again: check the guest (%s) before running it again",
		Shorten(e.Line, 120), started, e.Channel, e.Cause, check)
}

func (e *StatusUnknownError) Unwrap() []error { return []error{ErrStatusUnknown, e.Cause} }

// ExitError is a command that ran and exited non-zero. It keeps the remote
// stderr so the message says what went wrong.
type ExitError struct {
	Line   string // redacted
	Code   int
	Stderr []byte
	Stdout []byte
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("run %q: exit %d", Shorten(e.Line, 120), e.Code)
	if tail := Tail(e.Stderr, 5); tail != "" {
		msg += ": " + tail
	} else if tail := Tail(e.Stdout, 3); tail != "" {
		msg += ": " + tail
	}
	return msg
}

// Tail returns the last n non-empty lines of b joined by " / ".
func Tail(b []byte, n int) string {
	lines := strings.Split(string(bytes.TrimSpace(b)), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append([]string{l}, keep...)
		}
	}
	return strings.Join(keep, " / ")
}

// Shorten cuts s to n bytes for a message, marking the cut with "…".
func Shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Redact masks every secret in s.
func Redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		// The quoted form first, so no quote marks are left around the mask.
		s = strings.ReplaceAll(s, Quote(sec), "********")
		s = strings.ReplaceAll(s, sec, "********")
	}
	return s
}

// RequotedSecrets is secrets plus the forms they take once the line holding
// them is quoted again as one word (sh -c on the node for the agent, sudo -n
// sh -c): a secret with a quote mark, or its quoted form, then no longer
// appears as written, and Redact must still find it.
func RequotedSecrets(secrets []string) []string {
	out := make([]string, 0, 3*len(secrets))
	for _, s := range secrets {
		if s == "" {
			continue // Redact ignores it; its quoted form is not a secret
		}
		out = append(out, s,
			strings.ReplaceAll(Quote(s), "'", `'\''`),
			strings.ReplaceAll(s, "'", `'\''`))
	}
	return out
}

// ExitCode returns the exit code carried by err: 0 for nil, the code of an
// *ExitError, -1 for any other error.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return -1
}

// MarkNotExist adds fs.ErrNotExist to a command that failed on a missing
// path, as the shells and tools word it ("No such file or directory";
// dash's "Directory nonexistent" for a redirection), so an upload made
// through commands fails like one made over SFTP.
func MarkNotExist(err error) error {
	var ee *ExitError
	if errors.As(err, &ee) && !errors.Is(err, fs.ErrNotExist) &&
		(bytes.Contains(ee.Stderr, []byte("No such file or directory")) || bytes.Contains(ee.Stderr, []byte("Directory nonexistent"))) {
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	}
	return err
}
