package transport

import (
	"os/exec"
	"testing"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"abc", "abc"},
		{"/etc/fstab", "/etc/fstab"},
		{"ip=dhcp", "'ip=dhcp'"},
		{"--ipconfig0", "--ipconfig0"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$(reboot)", "'$(reboot)'"},
		{"~root", "'~root'"},
		{"a;b", "'a;b'"},
		{"x\ny", "'x\ny'"},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzQuote checks that a real shell gets back exactly the bytes quoted.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a", "it's", "$(x)", "`x`", "a b\tc\n", "\\", "'''", "A=b", "*", "-n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				t.Skip("a shell argument cannot hold NUL")
			}
		}
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatalf("sh on %q: %v", Quote(s), err)
		}
		if string(out) != s {
			t.Fatalf("round trip of %q via %s gave %q", s, Quote(s), out)
		}
	})
}

func TestCommandFirstWordIsNotAnAssignment(t *testing.T) {
	out, err := exec.Command("/bin/sh", "-c", Command("echo", "A=b")+"; "+Command("A=b")+" 2>/dev/null; echo $?").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "A=b\n127\n" {
		t.Fatalf("got %q", out)
	}
}
