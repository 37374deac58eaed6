package pvesim

import (
	"os"
	"strings"
	"testing"
)

func TestCountCalls(t *testing.T) {
	long := strings.Repeat("x", 70)
	tests := []struct {
		name string
		on   bool
		runs [][]string
		want string // calls.log; "-" means no file
	}{
		{name: "off", runs: [][]string{{"qm", "list"}}, want: "-"},
		{name: "qm and pvesh", on: true,
			runs: [][]string{{"qm", "config", "8101"}, {"pvesh", "get", "/nodes/pve/qemu/8101/status/current"}},
			want: "qm config 8101\npvesh get /nodes/pve/qemu/8101/status/current\n"},
		{name: "called as pvesim", on: true, runs: [][]string{{"pvesim", "qm", "status", "8101"}},
			want: "qm status 8101\n"},
		{name: "failing call counts too", on: true, runs: [][]string{{"qm", "config", "4242"}},
			want: "qm config 4242\n"},
		{name: "quoted and cut", on: true, runs: [][]string{{"qm", "guest", "exec", "8101", "--", "sh", "-c", "echo a b", long}},
			want: `qm guest exec 8101 -- sh -c "echo a b" ` + strings.Repeat("x", maxArgLen) + "…\n"},
		{name: "empty argument", on: true, runs: [][]string{{"qm", "set", "8101", "--description", ""}},
			want: `qm set 8101 --description ""` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t).withVMs()
			if tt.on {
				h.write(countSwitch, "")
			}
			for _, r := range tt.runs {
				h.run("", r...)
			}
			got, err := os.ReadFile(h.sim.path(callsLog))
			switch {
			case tt.want == "-" && err == nil:
				t.Errorf("counting is off, but %s holds %q", callsLog, got)
			case tt.want == "-":
			case err != nil:
				t.Fatal(err)
			case string(got) != tt.want:
				t.Errorf("%s:\n%s\nwant:\n%s", callsLog, got, tt.want)
			}
		})
	}
}
