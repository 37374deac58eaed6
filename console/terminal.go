// Package console shows phoenix on a terminal: a run as it happens (finished
// steps scroll up in colour, each running VM's step stays at the bottom with
// its elapsed time and the last line of its output, redrawn in place), a
// recap table at the end, and the tables of other verbs. Output that is not
// a terminal gets runner.Text's plain lines instead.
//
// Terminal handling is libraries' work: golang.org/x/term tells whether the
// output is a terminal and its size, termenv picks the colour profile
// (NO_COLOR, CLICOLOR_FORCE, TERM, COLORTERM) and writes the styles and
// cursor movements, uniseg measures text in terminal cells.
package console

import (
	"io"
	"os"

	"github.com/muesli/termenv"
	"golang.org/x/term"
)

// Terminal is an output that is a terminal, with what the live view needs
// to know about it.
type Terminal struct {
	Out     io.Writer
	Profile termenv.Profile // termenv.Ascii: no colours
	// Size returns the terminal's width and height in cells, read anew
	// each time (the window may be resized during a run).
	Size func() (width, height int)
}

// Detect returns w as a Terminal when it is one and TERM is not "dumb" (a
// terminal that cannot move its cursor gets plain lines). Colours follow
// termenv's reading of env (NO_COLOR wins); noColor (--no-color) turns
// them off.
func Detect(w io.Writer, env termenv.Environ, noColor bool) (Terminal, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || env.Getenv("TERM") == "dumb" {
		return Terminal{}, false
	}
	// WithTTY: termenv would take a CI variable to mean "not a terminal";
	// this one is, so only the colour rules apply.
	profile := termenv.NewOutput(f, termenv.WithEnvironment(env), termenv.WithTTY(true)).EnvColorProfile()
	if noColor {
		profile = termenv.Ascii
	}
	return Terminal{Out: f, Profile: profile, Size: func() (int, int) {
		w, h, err := term.GetSize(int(f.Fd()))
		if err != nil || w <= 0 {
			return 80, 24
		}
		return w, h
	}}, true
}

// OSEnviron is the process environment as termenv reads it.
type OSEnviron struct{}

func (OSEnviron) Environ() []string        { return os.Environ() }
func (OSEnviron) Getenv(key string) string { return os.Getenv(key) }
