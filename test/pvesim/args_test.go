package pvesim

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestGetopt(t *testing.T) {
	clone := &command{
		path: "clone", args: []string{"vmid", "newid"}, usage: "qm clone <vmid> <newid> [OPTIONS]",
		props: []prop{vmidProp("vmid"), vmidProp("newid"), {name: "name", format: formatDNSName}, strProp("nameserver"),
			boolProp("full"), strProp("net0"), strProp("net1"), intProp("cores", 1), {name: "delete", list: true},
			{name: "cipassword", optValue: true}, {name: "sshkeys"}, snapnameProp()},
	}
	exec := &command{
		path: "guest exec", args: []string{"vmid", "extra-args"}, usage: "qm guest exec <vmid> [<extra-args>] [OPTIONS]",
		props: []prop{vmidProp("vmid"), boolProp("synchronous"), intProp("timeout", 0), boolProp("pass-stdin")},
	}
	tests := []struct {
		name   string
		cmd    *command
		args   []string
		vals   map[string]string
		extra  []string
		err    string // whole error block
		stderr string // Getopt's own complaints
	}{
		{name: "space and equals forms", cmd: clone, args: []string{"9000", "8101", "--name", "web01", "--cores=2"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "name": "web01", "cores": "2"}},
		{name: "single dash, options before positionals", cmd: clone, args: []string{"-name", "web01", "9000", "-full", "1", "8101"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "name": "web01", "full": "1"}},
		{name: "unique prefix", cmd: clone, args: []string{"9000", "8101", "--sshkey", "/dev/stdin", "--cor", "4"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "sshkeys": "/dev/stdin", "cores": "4"}},
		{name: "exact name wins over longer names", cmd: clone, args: []string{"9000", "8101", "--name", "a"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "name": "a"}},
		{name: "case-insensitive", cmd: clone, args: []string{"9000", "8101", "--FULL"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "full": "1"}},
		{name: "boolean alone, before an option", cmd: clone, args: []string{"9000", "8101", "--full", "--cores", "2"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "full": "1", "cores": "2"}},
		{name: "boolean words", cmd: clone, args: []string{"9000", "8101", "--full=off"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "full": "0"}},
		{name: "boolean swallows a following positional", cmd: clone, args: []string{"--full", "9000", "8101"},
			err: "400 not enough arguments\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "bad boolean", cmd: clone, args: []string{"9000", "8101", "--full", "maybe"},
			err: "400 unable to parse boolean option\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "string option takes a dash value", cmd: clone, args: []string{"9000", "8101", "--nameserver", "-x"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "nameserver": "-x"}},
		{name: "interactive password without value", cmd: clone, args: []string{"9000", "8101", "--cipassword"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "cipassword": ""}},
		{name: "list option repeats and joins", cmd: clone, args: []string{"9000", "8101", "--delete", "onboot", "--delete", "tags,name"},
			vals: map[string]string{"vmid": "9000", "newid": "8101", "delete": "onboot,tags,name"}},
		{name: "unknown option", cmd: clone, args: []string{"9000", "8101", "--bogus", "1"},
			stderr: "Unknown option: bogus\n", err: "400 unable to parse option\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "ambiguous prefix", cmd: clone, args: []string{"9000", "8101", "--net", "virtio"},
			stderr: "Option net is ambiguous (net0, net1)\n", err: "400 unable to parse option\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "missing value", cmd: clone, args: []string{"9000", "8101", "--cores"},
			stderr: "Option cores requires an argument\n", err: "400 unable to parse option\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "not enough arguments", cmd: clone, args: []string{"9000"},
			err: "400 not enough arguments\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "too many arguments", cmd: clone, args: []string{"9000", "8101", "8102"},
			err: "400 too many arguments\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "verification: every bad parameter listed", cmd: clone, args: []string{"99", "abc", "--name", "web_01", "--cores", "0"},
			err: "400 Parameter verification failed.\ncores: value must have a minimum value of 1\nname: invalid format - value does not look like a valid DNS name\n" +
				"newid: type check ('integer') failed - got 'abc'\nvmid: invalid format - value does not look like a valid VM ID\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "vmid with leading zero", cmd: clone, args: []string{"0100", "8101"},
			err: "400 Parameter verification failed.\nvmid: invalid format - value does not look like a valid VM ID\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "snapshot name rules", cmd: clone, args: []string{"9000", "8101", "--snapname", "1st"},
			err: "400 Parameter verification failed.\nsnapname: invalid format - invalid configuration ID '1st'\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "snapshot name length", cmd: clone, args: []string{"9000", "8101", "--snapname", "a" + strings.Repeat("b", 40)},
			err: "400 Parameter verification failed.\nsnapname: value may only be 40 characters long\nqm clone <vmid> <newid> [OPTIONS]\n"},
		{name: "double dash ends options", cmd: exec, args: []string{"8101", "--timeout", "5", "--", "/bin/ls", "-la", "--full"},
			vals: map[string]string{"vmid": "8101", "timeout": "5"}, extra: []string{"/bin/ls", "-la", "--full"}},
		{name: "without double dash a guest flag is a qm option", cmd: exec, args: []string{"8101", "/bin/ls", "-la"},
			stderr: "Unknown option: la\n", err: "400 unable to parse option\nqm guest exec <vmid> [<extra-args>] [OPTIONS]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			p, err := tt.cmd.parse(tt.args, &stderr)
			if stderr.String() != tt.stderr {
				t.Errorf("stderr = %q, want %q", stderr.String(), tt.stderr)
			}
			if tt.err != "" {
				var b bytes.Buffer
				if err == nil {
					t.Fatalf("parse succeeded with %v, want error %q", p.vals, tt.err)
				}
				err.(*paramError).write(&b)
				if b.String() != tt.err {
					t.Errorf("error block:\n%s\nwant:\n%s", b.String(), tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !reflect.DeepEqual(p.vals, tt.vals) {
				t.Errorf("vals = %v, want %v", p.vals, tt.vals)
			}
			if !reflect.DeepEqual(p.extra, tt.extra) {
				t.Errorf("extra = %q, want %q", p.extra, tt.extra)
			}
		})
	}
}
