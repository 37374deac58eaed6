package console

import (
	"strings"

	"github.com/muesli/termenv"
)

// Palette styles text by what it means, for one colour profile; with
// termenv.Ascii every method returns its text unchanged.
type Palette struct{ Profile termenv.Profile }

func (p Palette) fg(color, s string) string {
	return p.Profile.String(s).Foreground(p.Profile.Color(color)).String()
}

func (p Palette) Good(s string) string { return p.fg("2", s) } // green
func (p Palette) Warn(s string) string { return p.fg("3", s) } // yellow
func (p Palette) Bad(s string) string {
	return p.Profile.String(s).Foreground(p.Profile.Color("1")).Bold().String()
}
func (p Palette) Dim(s string) string  { return p.Profile.String(s).Faint().String() }
func (p Palette) Bold(s string) string { return p.Profile.String(s).Bold().String() }

// Status colours a status word (or text standing for it) by the word:
// ok green, changed and pending changes yellow, failed red, skipped dim.
func (p Palette) Status(word, s string) string {
	switch {
	case word == "ok":
		return p.Good(s)
	case word == "changed" || word == "pending" || strings.HasPrefix(word, "would "):
		return p.Warn(s)
	case word == "failed":
		return p.Bad(s)
	case word == "skipped":
		return p.Dim(s)
	}
	return s
}

// DiffLine colours a unified diff line: additions green, removals red.
func (p Palette) DiffLine(s string) string {
	switch {
	case strings.HasPrefix(s, "+++") || strings.HasPrefix(s, "---"):
		return p.Bold(s)
	case strings.HasPrefix(s, "+"):
		return p.fg("2", s)
	case strings.HasPrefix(s, "-"):
		return p.fg("1", s)
	case strings.HasPrefix(s, "@@"):
		return p.fg("6", s)
	}
	return s
}
