package console

import (
	"regexp"
	"strings"

	"github.com/rivo/uniseg"
)

// Width is how many terminal cells s takes.
func Width(s string) int { return uniseg.StringWidth(s) }

// Truncate cuts s to at most w cells, ending it with "…" when it was cut.
func Truncate(s string, w int) string {
	if Width(s) <= w {
		return s
	}
	if w <= 0 {
		return ""
	}
	var b strings.Builder
	used, state := 0, -1
	for rest := s; rest != ""; {
		var cluster string
		var cw int
		cluster, rest, cw, state = uniseg.FirstGraphemeClusterInString(rest, state)
		if used+cw > w-1 {
			break
		}
		b.WriteString(cluster)
		used += cw
	}
	return b.String() + "…"
}

// Pad fills s with spaces to w cells (left-aligned) or puts the spaces
// first (right).
func Pad(s string, w int, right bool) string {
	n := w - Width(s)
	if n <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", n) + s
	}
	return s + strings.Repeat(" ", n)
}

// controls matches what must not reach the terminal from text phoenix did
// not write (guest output, remote errors): escape sequences that could
// move the cursor or recolour the screen, and C0 control characters.
var controls = regexp.MustCompile("\x1b\\[[0-9:;<=>?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(\x07|\x1b\\\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f]")

// Clean makes one line of foreign text safe to print: what follows its
// last carriage return (a progress bar's latest state), tabs as spaces,
// no control characters or escape sequences.
func Clean(s string) string {
	if i := strings.LastIndexByte(strings.TrimRight(s, "\r"), '\r'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ReplaceAll(s, "\t", "    ")
	return controls.ReplaceAllString(s, "")
}

// piece is text and its style (nil: plain), for fit.
type piece struct {
	text  string
	style func(string) string
}

// fit joins pieces into one line of at most width cells: the pieces are
// cut, first the last ones, then styled.
func fit(width int, pieces ...piece) string {
	var b strings.Builder
	room := width
	for _, p := range pieces {
		text := Truncate(p.text, room)
		room -= Width(text)
		if p.style != nil && text != "" {
			text = p.style(text)
		}
		b.WriteString(text)
	}
	return b.String()
}
