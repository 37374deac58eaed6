package console

import (
	"fmt"
	"strings"
	"testing"
)

// screen replays what a view wrote as a terminal shows it: text, newlines,
// and the control sequences the view may use (erase line, cursor up,
// styles, which it drops). Anything else fails the test: the view must not
// write what this test does not understand.
type screen struct {
	t        testing.TB
	lines    [][]rune
	row, col int
	styled   bool // saw a style (SGR) sequence
}

func (s *screen) Write(p []byte) (int, error) {
	rs := []rune(string(p))
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		for len(s.lines) <= s.row {
			s.lines = append(s.lines, nil)
		}
		switch {
		case r == '\n':
			s.row, s.col = s.row+1, 0
		case r == 0x1b:
			if i+1 >= len(rs) || rs[i+1] != '[' {
				s.t.Fatalf("escape without CSI in %q", p)
			}
			j := i + 2
			for j < len(rs) && (rs[j] >= '0' && rs[j] <= '9' || rs[j] == ';') {
				j++
			}
			if j >= len(rs) {
				s.t.Fatalf("unterminated escape in %q", p)
			}
			param := string(rs[i+2 : j])
			switch rs[j] {
			case 'm':
				s.styled = true
			case 'K':
				if param != "2" {
					s.t.Fatalf("erase line %q", param)
				}
				s.lines[s.row] = nil
			case 'A':
				n := 1
				if param != "" {
					fmt.Sscan(param, &n)
				}
				s.row = max(s.row-n, 0)
			default:
				s.t.Fatalf("unexpected control sequence %q", string(rs[i:j+1]))
			}
			i = j
		case r < 0x20 || r == 0x7f:
			s.t.Fatalf("control character %q written", r)
		default:
			line := s.lines[s.row]
			for len(line) < s.col {
				line = append(line, ' ')
			}
			if s.col < len(line) {
				line[s.col] = r
			} else {
				line = append(line, r)
			}
			s.lines[s.row] = line
			s.col++
		}
	}
	return len(p), nil
}

// text is the screen's content, trailing empty lines dropped.
func (s *screen) text() string {
	var out []string
	for _, l := range s.lines {
		out = append(out, strings.TrimRight(string(l), " "))
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}
