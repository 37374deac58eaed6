package inventory

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// ok is the empty problem: the rule accepts the value.
const ok = ""

// checkRule runs rule on each value: want is ok or a part of the problem.
func checkRule(t *testing.T, name string, rule func(string) string, cases map[string]string) {
	t.Helper()
	for v, want := range cases {
		got := rule(v)
		if (want == ok) != (got == ok) || !strings.Contains(got, want) {
			t.Errorf("%s(%q) = %q, want %q", name, v, got, want)
		}
	}
}

func TestMountPointProblem(t *testing.T) {
	checkRule(t, "mountPointProblem", mountPointProblem, map[string]string{
		"/mnt/x":                 ok,
		"/mnt":                   ok,
		"/srv/x":                 ok,
		"/opt/app":               ok,
		"/data":                  ok,
		"/home/x":                ok,
		"/var/lib/app":           ok,
		"/etc/letsencrypt":       ok,
		"/usr/local/share/model": ok,
		"/tmp/x":                 ok,
		"/library":               ok, // not a lib* system directory
		"/":                      "root file system",
		"/boot":                  "must not replace /boot or anything below it",
		"/boot/efi":              "must not replace /boot or anything below it",
		"/proc":                  "must not replace /proc",
		"/proc/x":                "must not replace /proc",
		"/sys/fs/cgroup":         "must not replace /sys",
		"/dev/shm":               "must not replace /dev",
		"/run/user/1000":         "must not replace /run",
		"/var/run/x":             "must not replace /var/run",
		"/usr":                   "must not replace /usr",
		"/usr/lib/x":             "must not replace /usr",
		"/usr/local":             "must not replace it (a directory below it is fine, e.g. /usr/local/app)",
		"/bin":                   "must not replace /bin",
		"/sbin/x":                "must not replace /sbin",
		"/lib":                   "must not replace /lib",
		"/lib64":                 "must not replace /lib64",
		"/libx32/x":              "must not replace /libx32",
		"/etc":                   "must not replace it",
		"/var":                   "must not replace it",
		"/var/lib":               "must not replace it",
		"/var/log":               "must not replace it",
		"/tmp":                   "must not replace it",
		"/home":                  "must not replace it",
		"/root":                  "must not replace it",
		"/etc/..":                `write "/", not "/etc/.."`,
		"/mnt/a/../../etc":       `write "/etc"`,
		"/mnt/./a":               `write "/mnt/a"`,
		"/mnt//a":                `write "/mnt/a"`,
		"/mnt/a/":                `write "/mnt/a"`,
		"mnt/a":                  "must be an absolute path in the guest",
		"":                       "must be an absolute path in the guest",
	})
}

func TestDestinationProblem(t *testing.T) {
	checkRule(t, "destinationProblem", destinationProblem, map[string]string{
		"/etc/motd":            ok,
		"/usr/local/bin/tool":  ok,
		"/root/.bashrc":        ok,
		"/boot/firmware/x.txt": ok,
		"/etc/":                `name the file, e.g. "/etc/file"`,
		"/srv/app/":            "must be a file path, not a directory",
		"/":                    "is a system directory of the guest, not a file path",
		"/etc":                 "is a system directory of the guest, not a file path",
		"/usr":                 "is a system directory of the guest, not a file path",
		"/proc/sys/kernel/x":   "kernel or runtime filesystem",
		"/run/x":               "kernel or runtime filesystem",
		"/dev/sda":             "kernel or runtime filesystem",
		"/etc/../x":            `write "/x"`,
		"etc/motd":             "must be an absolute path in the guest",
	})
}

func TestControlCharProblem(t *testing.T) {
	checkRule(t, "controlCharProblem", controlCharProblem, map[string]string{
		"/mnt/data":   ok,
		"ünïcødé ok":  ok,
		"a\nb":        `newline, \n) at byte 1`,
		"a\rb":        `carriage return`,
		"\tx":         `tab, \t) at byte 0`,
		"x\x00":       "NUL",
		"x\x7f":       "DEL",
		"x\x1b[31m":   "U+001B",
		"x\u0085next": "U+0085", // C1 next line
	})
}

func TestUserNameProblem(t *testing.T) {
	for u, want := range map[string]bool{
		"phoenix": true, "phoenix_user": true, "_svc": true, "a-b": true, "win$": true, strings.Repeat("a", 32): true,
		"-oProxyCommand=x": false, "Root": false, "1user": false, "a b": false, "a$b": false, "": false,
		strings.Repeat("a", 33): false, "user\n": false, "a.b": false,
	} {
		if got := userNameProblem(u); (got == ok) != want {
			t.Errorf("userNameProblem(%q) = %q, want ok=%v", u, got, want)
		}
	}
}

func TestSplitNFSSource(t *testing.T) {
	tests := []struct{ in, server, path, problem string }{
		{"/export/a", "", "/export/a", ok},
		{"10.0.0.13:/export/a", "10.0.0.13", "/export/a", ok},
		{"nas.lan:/export/a", "nas.lan", "/export/a", ok},
		{"NAS:/", "NAS", "/", ok},
		{"[fd00::2]:/export/a", "[fd00::2]", "/export/a", ok},
		{"[FD00:0::2]:/export/a", "[fd00::2]", "/export/a", ok},
		{"fd00::2:/export/a", "[fd00::2]", "/export/a", ok}, // unambiguous without brackets too
		{"export/a", "", "", "absolute path on the NFS server or server:/path"},
		{"nas:export", "", "", "server:/path"},
		{"a b:/export", "", "", `server "a b" before ":/"`},
		{"[10.0.0.1]:/export", "", "", `server "[10.0.0.1]"`},
		{"-o:/export", "", "", `server "-o"`},
	}
	for _, tt := range tests {
		server, p, problem := splitNFSSource(tt.in)
		if (tt.problem == ok) != (problem == ok) || !strings.Contains(problem, tt.problem) {
			t.Errorf("splitNFSSource(%q) problem %q, want %q", tt.in, problem, tt.problem)
			continue
		}
		if problem == ok && (server != tt.server || p != tt.path) {
			t.Errorf("splitNFSSource(%q) = %q, %q; want %q, %q", tt.in, server, p, tt.server, tt.path)
		}
	}
}

func TestNFSOptionsProblem(t *testing.T) {
	for o, want := range map[string]bool{
		"defaults,auto,nofail": true, "rw,hard,vers=4.2": true,
		"defaults, nofail": false, "rw,,hard": false, "rw,": false, "a\tb": false,
	} {
		if got := nfsOptionsProblem(o); (got == ok) != want {
			t.Errorf("nfsOptionsProblem(%q) = %q, want ok=%v", o, got, want)
		}
	}
}

// testKey is a real ed25519 public key in authorized_keys form.
func testKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " me@laptop"
}

func TestSSHKeyProblem(t *testing.T) {
	key := testKey(t)
	typ, data, _ := strings.Cut(key, " ")
	data, comment, _ := strings.Cut(data, " ")
	checkRule(t, "sshKeyProblem", sshKeyProblem, map[string]string{
		key:                               ok,
		typ + " " + data:                  ok,
		`no-pty,from="10.0.0.0/8" ` + key: ok,
		"":                                "it is empty",
		"AAAAC3NzaC1lZDI1NTE5 me@laptop":  "no key type",
		"ssh-ed25519":                     "the key data after ssh-ed25519 is missing",
		typ + " " + data[:len(data)-7] + " " + comment: "not base64",
		typ + " " + data[:len(data)-4] + " " + comment: "not a ssh-ed25519 key",
		"ssh-rsa " + data + " " + comment:              "the key data is a ssh-ed25519 key, but the line says ssh-rsa",
	})
}

// The schema and the Go rules spell some patterns twice (the schema for
// editors and the config, Go for inventory.yml and hosts): they must agree.
func TestSchemaPatternsMatchGoRules(t *testing.T) {
	var doc struct {
		Defs map[string]struct {
			Pattern    string `json:"pattern"`
			Properties map[string]struct {
				Pattern string `json:"pattern"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(Schema(), &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc.Defs["userName"].Pattern; got != userNameRE.String() {
		t.Errorf("schema userName pattern %q, Go %q", got, userNameRE.String())
	}
	if got := doc.Defs["vm"].Properties["name"].Pattern; got != dnsNameRE.String() {
		t.Errorf("schema vm name pattern %q, Go %q", got, dnsNameRE.String())
	}
}
