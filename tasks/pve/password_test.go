package pve

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// Hashes of secretPW made by glibc's crypt(3), not by the library phoenix
// uses: perl -e 'print crypt(q(hunter2 '\”quoted'\” pw), q($6$abcdefghijklmnop$))'
const (
	glibcSHA512 = "$6$abcdefghijklmnop$oQwXeKb3mveY4pDTR7llN9S4pvp9VVkGBKAfqaEhBj5w6.xJa6y0nqEP9aHLUrlMBnpiioZZQaNrq8zhpBJOQ."
	// As Proxmox stores a password given in plain text: SHA-256 crypt.
	pveSHA256      = "$5$Xy12ab34$X.49Oaeb2f5KRe9DsAofmkw.QJ9fOMxMVzJfz6NBVD2"
	pveSHA256Other = "$5$Xy12ab34$6fHq5MDQQpkK7XoHElZf22dIZJIMyVpsJt9oMyJ5fo9" // of "other"
	rounds10000    = "$6$rounds=10000$s4ltS4LT$e.SMMukqHYkHB.h6nGHEtgOih9klu9b.Gaq3XZvEzDboYBCykhGcNzJqYUrgfP8fn4NH2XUta72wod2wfHUTA1"
	yescrypt       = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
)

// saltBytes makes cryptPassword pick the salt "abcdefghijklmnop" ('a' is
// character 38 of the salt alphabet), for a few hashes.
func saltBytes() *bytes.Reader {
	b := make([]byte, 16*8)
	for i := range b {
		b[i] = byte(38 + i%16)
	}
	return bytes.NewReader(b)
}

func TestCryptPasswordIsGlibcSHA512(t *testing.T) {
	got, err := cryptPassword(secretPW, saltBytes())
	if err != nil || got != glibcSHA512 {
		t.Fatalf("cryptPassword = %q, %v\nwant glibc's %q", got, err, glibcSHA512)
	}
	// A configured value that already is a hash goes to qm as it is.
	if got, _ := cryptPassword(pveSHA256, saltBytes()); got != pveSHA256 {
		t.Errorf("a crypt hash was hashed again: %q", got)
	}
	if _, err := cryptPassword(secretPW, bytes.NewReader(make([]byte, 15))); err == nil {
		t.Error("no randomness, no error")
	}
}

func TestPasswordMatches(t *testing.T) {
	tests := []struct {
		name, stored, pw string
		match, known     bool
	}{
		{"sha-512 by phoenix", glibcSHA512, secretPW, true, true},
		{"sha-256 by proxmox", pveSHA256, secretPW, true, true},
		{"sha-512 with rounds", rounds10000, secretPW, true, true},
		{"changed password", pveSHA256Other, secretPW, false, true},
		{"configured as the stored hash", pveSHA256, pveSHA256, true, true},
		{"configured as another hash", pveSHA256, glibcSHA512, false, true},
		{"yescrypt set by hand", yescrypt, secretPW, false, false},
		{"plain text (windows ostype)", secretPW, secretPW, false, false},
		{"broken hash", "$6$salt", secretPW, false, false},
	}
	for _, tt := range tests {
		if match, known := passwordMatches(tt.stored, tt.pw); match != tt.match || known != tt.known {
			t.Errorf("%s: match %v known %v, want %v %v", tt.name, match, known, tt.match, tt.known)
		}
	}
}

func TestParseDumpPassword(t *testing.T) {
	dump := "#cloud-config\nhostname: web01\nmanage_etc_hosts: true\nfqdn: web01\nuser: admin\npassword: " + pveSHA256 +
		"\nchpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n\n"
	if got := parseDumpPassword([]byte(dump)); got != pveSHA256 {
		t.Errorf("password = %q", got)
	}
	if got := parseDumpPassword([]byte("#cloud-config\nhostname: web01\n")); got != "" {
		t.Errorf("no password line gave %q", got)
	}
}

// dumpRead is the read of the stored password hash.
func dumpRead(hash string) fake.Call {
	return fake.Call{Line: "qm cloudinit dump 8101 user", Result: fake.Out("#cloud-config\nhostname: web01\nuser: admin\npassword: " + hash + "\n\n")}
}

// TestPasswordReachesTheNodeCrypted: qm set gets the SHA-512 hash, never the
// password; a stored hash of the same password (whoever made it) is left
// alone; a changed password is set again.
func TestPasswordReachesTheNodeCrypted(t *testing.T) {
	tests := []struct {
		name   string
		stored string // the hash on the node; "" = none
		set    string // the exact qm set line; "" = nothing to do
		diff   string
	}{
		{name: "new password", set: "qm set 8101 --cipassword '" + glibcSHA512 + "'", diff: "+ cipassword: ********\n"},
		{name: "stored by phoenix", stored: glibcSHA512},
		{name: "stored by proxmox", stored: pveSHA256},
		{name: "changed", stored: pveSHA256Other,
			set: "qm set 8101 --cipassword '" + glibcSHA512 + "'", diff: "- cipassword: ********\n+ cipassword: ********\n"},
		{name: "another scheme is left alone", stored: yescrypt},
	}
	for _, tt := range tests {
		// The hash is in the config file; qm config masks it, and then
		// qm cloudinit dump tells it.
		reads := map[string][]fake.Call{"files": {stateRead(8101, configured, "stopped", noSnapshots)}}
		reads["qm"] = qmStateRead(8101, fake.Out(render(configured)), fake.Out("status: stopped\n"), fake.Out(noSnapshots))
		if tt.stored != "" {
			reads["files"] = []fake.Call{stateRead(8101, with(configured, "cipassword", tt.stored), "stopped", noSnapshots)}
			reads["qm"] = append(qmStateRead(8101, fake.Out(render(with(configured, "cipassword", "**********"))), fake.Out("status: stopped\n"), fake.Out(noSnapshots)),
				dumpRead(tt.stored))
		}
		for _, path := range []string{"files", "qm"} {
			t.Run(tt.name+" through "+path, func(t *testing.T) {
				node := fake.New(t, reads[path]...)
				env := newEnv(node, false)
				task := newTask(t, "vm_config", map[string]any{"cipassword": inventory.Secret(secretPW)})
				c, err := task.Check(context.Background(), env)
				if err != nil {
					t.Fatal(err)
				}
				if tt.set == "" {
					if c.Pending() {
						t.Fatalf("check = %s %q, want nothing to do", c.Action, c.Summary)
					}
					return
				}
				if want := "qm set 8101 --cipassword ********"; len(c.Commands) != 1 || c.Commands[0] != want {
					t.Errorf("commands = %q, want %q: the hash is masked too", c.Commands, want)
				}
				if !strings.HasSuffix(c.Diff, tt.diff) {
					t.Errorf("diff:\n%s\nwant it to end with:\n%s", c.Diff, tt.diff)
				}
				node.Expect(fake.Call{Line: tt.set, Result: fake.Out("update VM 8101: -cipassword <hidden>\n")})
				if err := task.Apply(context.Background(), env, c); err != nil {
					t.Fatal(err)
				}
				for _, l := range node.Lines {
					if strings.Contains(l, "hunter2") {
						t.Errorf("the password reached the node: %s", l)
					}
				}
			})
		}
	}
}

// A stored hash that cannot be read is an error, not a silent skip.
func TestPasswordDumpFails(t *testing.T) {
	reads := qmStateRead(8101, fake.Out(render(with(configured, "cipassword", "**********"))), fake.Out("status: stopped\n"), fake.Out(noSnapshots))
	node := fake.New(t, append(reads, fake.Call{Line: "qm cloudinit dump 8101 user", Result: fake.Fail(255, "VM 8101 qmp command failed\n")})...)
	task := newTask(t, "vm_config", map[string]any{"cipassword": inventory.Secret(secretPW)})
	_, err := task.Check(context.Background(), newEnv(node, false))
	if err == nil || !strings.Contains(err.Error(), "read the stored password hash") || transport.ExitCode(err) != 255 {
		t.Errorf("err = %v", err)
	}
}
