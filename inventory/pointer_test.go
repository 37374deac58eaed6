package inventory

import "testing"

func TestEscapePointer(t *testing.T) {
	for in, want := range map[string]string{
		"vms":          "vms",
		"a/b":          "a~1b",
		"~x":           "~0x",
		"~1":           "~01", // a literal "~1" key must not read back as "/"
		"pre-features": "pre-features",
	} {
		if got := escapePointer(in); got != want {
			t.Errorf("escapePointer(%q) = %q, want %q", in, got, want)
		}
	}
}
