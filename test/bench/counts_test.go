package bench

import (
	"strings"
	"testing"
)

// TestParseCalls reads pvesim's calls log as the benchmarks do.
func TestParseCalls(t *testing.T) {
	tests := []struct {
		name string
		log  string
		want counts
	}{
		{name: "empty", log: "", want: counts{}},
		{name: "a no-op run through the agent", log: `qm config 8101
qm status 8101
qm listsnapshot 8101
qm guest cmd 8101 ping
qm guest exec 8101 --synchronous 0 -- /bin/sh -c "export HOME=/root PATH=…"
qm guest exec-status 8101 770
qm guest exec-status 8101 770
`, want: counts{Calls: 7, ConfigReads: 1}},
		{name: "other VMs do not count as reads", log: `qm config 9000
qm config 81010
qm guest exec 9000 -- true
pvesh get /nodes/pve/qemu/9000/config
`, want: counts{Calls: 4}},
		{name: "pvesh reads", log: `pvesh get /nodes/pve/qemu/8101/config --output-format json
pvesh create /nodes/pve/qemu/8101/agent/exec --command /bin/true
pvesh get /nodes/pve/qemu/8101/agent/exec-status --pid 7
pvesh create /nodes/pve/qemu/8101/agent/file-write --file /etc/motd --content "abc"
`, want: counts{Calls: 4, ConfigReads: 1}},
		{name: "a read twice", log: "qm config 8101\nqm set 8101 --cores 2\nqm config 8101\n",
			want: counts{Calls: 3, ConfigReads: 2}},
		{name: "no final newline, blank and foreign lines", log: "\nhold-lock 8101 5\nqm status 8101",
			want: counts{Calls: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCalls(tt.log); got != tt.want {
				t.Errorf("parseCalls = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPromise(t *testing.T) {
	tests := []struct {
		name  string
		c     counts
		wants []string // substrings of the error; none means no error
	}{
		{name: "kept", c: counts{VMs: 1, NodeSSH: 1, GuestExecs: 1, AgentConns: 2}},
		{name: "over SSH, no exec", c: counts{VMs: 1, NodeSSH: 1, GuestSSH: 1}},
		{name: "ten VMs, one connection", c: counts{VMs: 10, NodeSSH: 1, GuestExecs: 10}},
		{name: "second node connection", c: counts{VMs: 1, NodeSSH: 2, GuestExecs: 1},
			wants: []string{"2 SSH connections to the node, want 1"}},
		{name: "no node connection", c: counts{VMs: 1},
			wants: []string{"0 SSH connections to the node, want 1"}},
		{name: "qm ran, two execs", c: counts{VMs: 1, NodeSSH: 1, Calls: 3, ConfigReads: 1, GuestExecs: 2},
			wants: []string{"3 qm/pvesh processes on the node, want none", "2 guest agent execs for 1 VMs"}},
		{name: "ten VMs, an eleventh exec", c: counts{VMs: 10, NodeSSH: 1, GuestExecs: 11},
			wants: []string{"11 guest agent execs for 10 VMs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.promise()
			if len(tt.wants) == 0 {
				if err != nil {
					t.Errorf("promise() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("promise() = nil, want an error saying %q", tt.wants)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("promise() = %q, does not say %q", err, w)
				}
			}
		})
	}
}
