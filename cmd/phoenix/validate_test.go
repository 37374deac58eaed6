package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestValidateRefuses: phoenix validate refuses what issue 8 found passing,
// each problem with file:line:col and pointer, all of them in one run.
func TestValidateRefuses(t *testing.T) {
	tests := []struct {
		name, old, new string
		ptr, msg       string
	}{
		{"guest path root", `"guest_path": "/mnt/data"`, `"guest_path": "/"`,
			"/vms/1/nfs_shares/0/guest_path", "root file system"},
		{"guest path proc", `"guest_path": "/mnt/data"`, `"guest_path": "/proc/x"`,
			"/vms/1/nfs_shares/0/guest_path", "must not replace /proc"},
		{"newline in path", `"host_path": "/export/8101"`, `"host_path": "/export/81\n01"`,
			"/vms/1/nfs_shares/0/host_path", `control character (newline, \n)`},
		{"bridge with options", `"network_bridge": "vmbr0"`, `"network_bridge": "vmbr0,tag=99,firewall=0"`,
			"/vm_defaults/network_bridge", "must be a bridge name such as vmbr0"},
		{"username option", `"username": "phoenix"`, `"username": "-oProxyCommand=x"`,
			"/vms/1/user_config/username", "must be a Linux user name"},
	}
	all := testConfig
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(testConfig, tt.old, tt.new, 1)
			args := files(t, doc)
			code, out, errs := run(append(args, "validate")...)
			want := fmt.Sprintf("phoenix: %s:%s: %s: ", args[1], lineCol(t, doc, tt.new), tt.ptr)
			if code != 1 || !strings.Contains(errs, want) || !strings.Contains(errs, tt.msg) {
				t.Errorf("exit %d, want 1 and %q…%q\nstdout: %s\nstderr: %s", code, want, tt.msg, out, errs)
			}
		})
		all = strings.Replace(all, tt.old, tt.new, 1)
	}
	// guest path root and proc edit the same value: the combined config has
	// the other four.
	code, _, errs := run(append(files(t, all), "validate")...)
	if lines := strings.Split(strings.TrimSpace(errs), "\n"); code != 1 || len(lines) != len(tests)-1 {
		t.Errorf("all at once: exit %d, %d lines, want 1 and %d:\n%s", code, len(lines), len(tests)-1, errs)
	}
}

// lineCol is where the value starting with marker's value part is in doc:
// marker is `"key": value`, the position is that of value.
func lineCol(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("%q not in the config", marker)
	}
	i += strings.Index(marker, ": ") + 2
	line := strings.Count(doc[:i], "\n") + 1
	return fmt.Sprintf("%d:%d", line, i-strings.LastIndex(doc[:i], "\n"))
}
