package runner

import (
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// UnifiedDiff returns the unified diff (3 lines of context) turning old
// into new, with name in the ---/+++ headers; "" when they are equal.
func UnifiedDiff(name, old, new string) string {
	if old == new {
		return ""
	}
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        lines(old),
		B:        lines(new),
		FromFile: "a/" + name,
		ToFile:   "b/" + name,
		Context:  3,
	})
	if err != nil { // difflib only fails writing to its own buffer
		return ""
	}
	return d
}

// lines splits s after each newline; difflib.SplitLines would add an empty
// last line to text that ends with a newline.
func lines(s string) []string {
	l := strings.SplitAfter(s, "\n")
	if l[len(l)-1] == "" {
		return l[:len(l)-1]
	}
	l[len(l)-1] += "\n" // a last line without newline still compares as a line
	return l
}
