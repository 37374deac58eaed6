package pvesim

import "testing"

func TestSHA256Crypt(t *testing.T) {
	tests := []struct{ pw, salt, want string }{
		// Expected values from `openssl passwd -5 -salt SALT PASSWORD`.
		{"Hello world!", "saltstring", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
		{"secret", "abcdefgh", "$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM."},
		// Salts are cut at 16 characters.
		{"a very much longer text to encrypt.  This one even stretches over morethan one line.", "anotherlongsaltstring",
			"$5$anotherlongsalts$xDOFsdwNAstVE3491M3cBSSbHS4ksOOPoR7XlHBf4G1"},
	}
	for _, tt := range tests {
		if got := sha256Crypt(tt.pw, tt.salt); got != tt.want {
			t.Errorf("sha256Crypt(%q, %q) = %q, want %q", tt.pw, tt.salt, got, tt.want)
		}
	}
}

func TestIsCrypted(t *testing.T) {
	for pw, want := range map[string]bool{
		"$5$abc$def": true, "$6$rounds=5000$salt$hash": true, "$1$x$y": true, "$2y$10$abc": true,
		"secret": false, "$5$nohash": false, "$7$a$b": false,
	} {
		if got := isCrypted(pw); got != want {
			t.Errorf("isCrypted(%q) = %v, want %v", pw, got, want)
		}
	}
}
