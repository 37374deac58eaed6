package console

import (
	"strings"
	"testing"
	"time"

	"github.com/muesli/termenv"

	"github.com/phoenix-hv/phoenix/runner"
	"github.com/phoenix-hv/phoenix/tasks"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// newTestLive is a view on a replayed screen of width×24 cells, no colours,
// redrawn only when the test calls tick.
func newTestLive(t *testing.T, width int, o Options) (*Live, *screen, *fakeClock) {
	t.Helper()
	scr := &screen{t: t}
	clock := &fakeClock{t: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	o.Now, o.Interval = clock.now, time.Hour
	l := NewLive(Terminal{Out: scr, Profile: termenv.Ascii, Size: func() (int, int) { return width, 24 }}, o)
	t.Cleanup(l.Close)
	return l, scr, clock
}

func TestLiveShowsRunningStepsAndRecap(t *testing.T) {
	l, scr, clock := newTestLive(t, 80, Options{})
	step := func(want string) {
		t.Helper()
		if got := scr.text(); got != want {
			t.Fatalf("screen:\n%s\nwant:\n%s", got, want)
		}
	}
	l.OnEvent(runner.Event{Type: runner.EventRunStart, Playbook: "create", VMIDs: []int{8101, 8102, 8103}, Forks: 5})
	l.OnEvent(runner.Event{Type: runner.EventVMStart, VMID: 8101, VMName: "web01"})
	l.OnEvent(runner.Event{Type: runner.EventTaskStart, VMID: 8101, Task: "mount nfs /mnt/data", Kind: "nfs_mount"})
	step(`create on vm 8101, 8102, 8103
8101  mount nfs /mnt/data    0.0s
create: 0 of 3 VMs done, 1 running, 0.0s
`)
	clock.advance(12300 * time.Millisecond)
	// apt's progress: the latest state after the last CR, no escapes.
	l.OnEvent(runner.Event{Type: runner.EventOutput, VMID: 8101, Task: "mount nfs /mnt/data", Stream: "stdout",
		Text: "Progress: [ 10%]\r\x1b[32mSetting up nfs-common (1:2.6.2-4+deb12u1) ...\x1b[0m\tdone"})
	l.OnEvent(runner.Event{Type: runner.EventVMStart, VMID: 8102, VMName: "db01"})
	l.OnEvent(runner.Event{Type: runner.EventTaskStart, VMID: 8102, Task: "clone from template", Kind: "vm_clone"})
	clock.advance(2 * time.Second)
	l.tick()
	step(`create on vm 8101, 8102, 8103
8101  mount nfs /mnt/data   14.3s  Setting up nfs-common (1:2.6.2-4+deb12u1) .…
8102  clone from template    2.0s
create: 0 of 3 VMs done, 2 running, 14.3s
`)
	l.OnEvent(runner.Event{Type: runner.EventTaskEnd, VMID: 8101, Task: "mount nfs /mnt/data", Kind: "nfs_mount", Status: runner.StatusChanged,
		Transport: "agent", Duration: 14300 * time.Millisecond,
		Change: tasks.Change{Action: tasks.Update, Summary: "installed the NFS client, set its /etc/fstab line, mounted 10.0.0.2:/export/data"}})
	l.OnEvent(runner.Event{Type: runner.EventVMEnd, VMID: 8101, Status: runner.StatusOK, Counts: runner.Counts{OK: 2, Changed: 1}, Duration: 14300 * time.Millisecond})
	l.OnEvent(runner.Event{Type: runner.EventTaskEnd, VMID: 8102, Task: "clone from template", Kind: "vm_clone", Status: runner.StatusFailed,
		Transport: "node", Duration: 2 * time.Second,
		Error: `run "qm clone 9000 8102 --name db01 --full 1": exit 2: clone failed: storage 'local-lvm' does not exist`})
	l.OnEvent(runner.Event{Type: runner.EventVMEnd, VMID: 8102, Status: runner.StatusFailed, Counts: runner.Counts{Failed: 1}, Duration: 2 * time.Second,
		Error: `vm 8102: step "clone from template": run "qm clone 9000 8102 --name db01 --full 1": exit 2: …`})
	l.OnEvent(runner.Event{Type: runner.EventVMEnd, VMID: 8103, Status: runner.StatusFailed, Counts: runner.Counts{Failed: 1}, Error: "dependency 8102 failed"})
	step(`create on vm 8101, 8102, 8103
8101  mount nfs /mnt/data          changed        agent  14.3s  installed the …
8102  clone from template          failed         node    2.0s  run "qm clone …
      run "qm clone 9000 8102 --name db01 --full 1": exit 2: clone failed: storage 'local-lvm' does not exist
create: 3 of 3 VMs done, 0 running, 14.3s
`)
	l.OnEvent(runner.Event{Type: runner.EventSummary, Counts: runner.Counts{OK: 2, Changed: 1, Failed: 2}, Duration: 14400 * time.Millisecond})
	step(`create on vm 8101, 8102, 8103
8101  mount nfs /mnt/data          changed        agent  14.3s  installed the …
8102  clone from template          failed         node    2.0s  run "qm clone …
      run "qm clone 9000 8102 --name db01 --full 1": exit 2: clone failed: storage 'local-lvm' does not exist

VMID   NAME   RESULT   OK  CHANGED  FAILED  SKIPPED   TIME  NOTE
8101   web01  changed   2        1       0        0  14.3s
8102   db01   failed    0        0       1        0   2.0s  at clone from temp…
8103          failed    0        0       1        0   0.0s  dependency 8102 fa…
total                   2        1       2        0  14.4s
`)
	if scr.styled {
		t.Error("styles written with the Ascii profile")
	}
}

func TestLiveFitsTheWidth(t *testing.T) {
	const width = 50
	l, scr, _ := newTestLive(t, width, Options{Verbose: 1})
	l.OnEvent(runner.Event{Type: runner.EventRunStart, Playbook: "create", VMIDs: []int{8101, 8102, 8103, 8104}, DryRun: true})
	l.OnEvent(runner.Event{Type: runner.EventVMStart, VMID: 8101, VMName: "web01"})
	l.OnEvent(runner.Event{Type: runner.EventTaskStart, VMID: 8101, Task: "feature a-feature-with-a-very-long-name", Kind: "feature"})
	l.OnEvent(runner.Event{Type: runner.EventOutput, VMID: 8101, Text: "a long line of output that does not fit"})
	l.OnEvent(runner.Event{Type: runner.EventTaskEnd, VMID: 8101, Task: "core config", Kind: "vm_config", Status: runner.StatusChanged,
		Transport: "node", DryRun: true, Change: tasks.Change{Action: tasks.Update, Summary: "set cores", Diff: "-cores: 1\n+cores: 2 and a long tail that wraps\n",
			Commands: []string{"qm set 8101 --cores 2"}}})
	for _, line := range strings.Split(scr.text(), "\n") {
		if Width(line) >= width && !strings.HasPrefix(line, runner.Indent) && !strings.HasPrefix(line, "8101  > ") {
			t.Errorf("line of %d cells on a %d-cell terminal: %q", Width(line), width, line)
		}
	}
	for _, want := range []string{
		"8101  > a long line of output that does not fit", // -v: output kept whole
		"      +cores: 2 and a long tail that wraps",      // diffs are never cut
		"      $ qm set 8101 --cores 2",                   // -v in a dry run: commands
		"8101  core co… would update   node    0.0s  set …",
	} {
		if !strings.Contains(scr.text(), want) {
			t.Errorf("screen lacks %q:\n%s", want, scr.text())
		}
	}
}

func TestLiveColours(t *testing.T) {
	scr := &screen{t: t}
	l := NewLive(Terminal{Out: scr, Profile: termenv.ANSI, Size: func() (int, int) { return 80, 24 }}, Options{Interval: time.Hour})
	defer l.Close()
	l.OnEvent(runner.Event{Type: runner.EventRunStart, Playbook: "stop", VMIDs: []int{8101}})
	l.OnEvent(runner.Event{Type: runner.EventTaskEnd, VMID: 8101, Task: "stop", Status: runner.StatusOK, Transport: "node"})
	if !scr.styled {
		t.Error("no styles with the ANSI profile")
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                       "plain",
		"50%\r100%":                   "100%",
		"done\r":                      "done",
		"\x1b[1;31mred\x1b[0m text":   "red text",
		"\x1b]0;title\x07after":       "after",
		"bell\x07 and \x1b[2Aup":      "bell and up",
		"tab\there":                   "tab    here",
		"nul\x00del\x7f":              "nuldel",
		"lone escape at the end \x1b": "lone escape at the end ",
		"ünïcödé and 漢字 stay as they are": "ünïcödé and 漢字 stay as they are",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		w    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven cells", 10, "eleven ce…"},
		{"漢字漢字漢字", 5, "漢字…"}, // two cells each
		{"anything", 0, ""},
		{"anything", 1, "…"},
	} {
		if got := Truncate(tc.in, tc.w); got != tc.want || Width(got) > max(tc.w, 0) {
			t.Errorf("Truncate(%q, %d) = %q (%d cells), want %q", tc.in, tc.w, got, Width(got), tc.want)
		}
	}
}

// More running VMs than the terminal has lines for: the first ones, then
// how many more, then the footer.
func TestLiveFitsTheHeight(t *testing.T) {
	scr := &screen{t: t}
	l := NewLive(Terminal{Out: scr, Profile: termenv.Ascii, Size: func() (int, int) { return 80, 6 }}, Options{Interval: time.Hour})
	defer l.Close()
	ids := []int{8101, 8102, 8103, 8104, 8105, 8106, 8107, 8108, 8109, 8110}
	l.OnEvent(runner.Event{Type: runner.EventRunStart, Playbook: "start", VMIDs: ids, Forks: 10})
	for _, id := range ids {
		l.OnEvent(runner.Event{Type: runner.EventVMStart, VMID: id})
		l.OnEvent(runner.Event{Type: runner.EventTaskStart, VMID: id, Task: "start"})
	}
	want := `start on vm 8101, 8102, 8103, 8104, 8105, 8106, 8107, 8108, 8109, 8110
8101  start    0.0s
8102  start    0.0s
8103  start    0.0s
… and 7 more running
start: 0 of 10 VMs done, 10 running, 0.0s
`
	if got := scr.text(); got != want {
		t.Errorf("screen:\n%s\nwant:\n%s", got, want)
	}
}
