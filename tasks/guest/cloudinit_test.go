package guest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// Outputs of `cloud-init status --long`: 22.4 (Debian bookworm) and 24.x.
const (
	ciDone224    = "status: done\ntime: Wed, 26 Nov 2026 10:00:03 +0000\ndetail:\nDataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud][dsmode=net]\n"
	ciRunning    = "status: running\ntime: Wed, 26 Nov 2026 10:00:01 +0000\ndetail:\nRunning in stage: modules-config\n"
	ciError      = "status: error\ntime: Wed, 26 Nov 2026 10:00:03 +0000\ndetail:\n('locale', ProcessExecutionError(\"Unexpected error while running command.\\nCommand: ['locale-gen', 'en_US.UTF-8']\"))\n"
	ciDegrade    = "status: done\nextended_status: degraded done\nboot_status_code: enabled-by-generator\nlast_update: Wed, 26 Nov 2026 10:00:03 +0000\ndetail: DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]\nerrors: []\nrecoverable_errors:\nWARNING:\n\t- Failed to write boot finished file\n"
	ciError24    = "status: error\nextended_status: error - done\nboot_status_code: enabled-by-generator\ndetail: DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]\nerrors:\n\t- (scripts_user) Failed to run module scripts_user\nrecoverable_errors: {}\n"
	ciStatusLine = "cloud-init status --long"
	ciTail       = "tail -n 25 /var/log/cloud-init-output.log"
)

func TestCloudInit(t *testing.T) {
	tests := []struct {
		name        string
		probe       transport.Result
		polls       []fake.Call
		wantSummary string
		wantDetails string
		wantErr     []string
	}{
		{name: "done", probe: exit(0, ciDone224, ""), wantSummary: "cloud-init done", wantDetails: strings.TrimSpace(ciDone224)},
		{
			name:  "running then done",
			probe: exit(0, ciRunning, ""),
			polls: []fake.Call{
				{Line: ciStatusLine, Result: exit(0, ciRunning, "")},
				{Line: ciStatusLine, Result: exit(0, ciDone224, "")},
			},
			wantSummary: "cloud-init done", wantDetails: strings.TrimSpace(ciDone224),
		},
		{
			name:  "a dropped poll is retried",
			probe: exit(0, ciRunning, ""),
			polls: []fake.Call{
				{Line: ciStatusLine, Err: transport.ErrDisconnected},
				{Line: ciStatusLine, Result: exit(0, ciDone224, "")},
			},
			wantSummary: "cloud-init done", wantDetails: strings.TrimSpace(ciDone224),
		},
		{
			name:        "not started yet, then done",
			probe:       exit(0, "status: not started\n", ""),
			polls:       []fake.Call{{Line: ciStatusLine, Result: exit(0, ciDone224, "")}},
			wantSummary: "cloud-init done", wantDetails: strings.TrimSpace(ciDone224),
		},
		{
			name: "degraded is a warning, with the log tail", probe: exit(2, ciDegrade, ""),
			polls:       []fake.Call{{Line: ciTail, Result: exit(0, "Cloud-init v. 24.1 finished\n", "")}},
			wantSummary: "cloud-init done with warnings (degraded done), see details",
			wantDetails: strings.TrimSpace(ciDegrade) + "\n/var/log/cloud-init-output.log (last 25 lines):\nCloud-init v. 24.1 finished",
		},
		{
			name: "disabled", probe: exit(0, "status: disabled\n", ""),
			wantSummary: "cloud-init is disabled in the guest", wantDetails: "status: disabled",
		},
		{
			name:    "error with detail and log tail",
			probe:   exit(1, ciError, ""),
			polls:   []fake.Call{{Line: ciTail, Result: exit(0, "Cloud-init v. 22.4.2 running 'modules:config'\nlocale-gen: not found\n", "")}},
			wantErr: []string{"cloud-init failed (", "cloud-init clean --logs --reboot", "):\nstatus: error", "('locale', ProcessExecutionError", "/var/log/cloud-init-output.log (last 25 lines):\nCloud-init v. 22.4.2 running 'modules:config'\nlocale-gen: not found"},
		},
		{
			name:  "error found while polling (24.x format)",
			probe: exit(0, ciRunning, ""),
			polls: []fake.Call{
				{Line: ciStatusLine, Result: exit(1, ciError24, "")},
				{Line: ciTail, Result: exit(1, "", "tail: cannot open '/var/log/cloud-init-output.log' for reading: No such file or directory\n")},
			},
			wantErr: []string{"extended_status: error - done", "Failed to run module scripts_user", "output log unreadable"},
		},
		{
			name: "cloud-init missing", probe: exit(127, "", "sh: 1: cloud-init: not found\n"),
			wantErr: []string{`cloud-init status: run "cloud-init status --long": exit 127: sh: 1: cloud-init: not found`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.env.Changed = true // the run that created or started the VM reads the long status
			task := w.task("cloud_init", map[string]any{"timeout_seconds": 60})
			w.probes(task, tt.probe)
			w.guest.Expect(tt.polls...)
			c, err := task.Check(context.Background(), w.env)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; change %+v", c)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Action != tasks.None || c.Summary != tt.wantSummary || c.Details != tt.wantDetails {
				t.Errorf("got %s %q details %q\nwant none %q details %q", c.Action, c.Summary, c.Details, tt.wantSummary, tt.wantDetails)
			}
		})
	}
}

// Files as cloud-init 22.4.2 (Debian bookworm) wrote them in a rig guest,
// and a 24.x status.json with a warning.
const (
	ciResultOK = `{
 "v1": {
  "datasource": "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud][dsmode=net]",
  "errors": []
 }
}`
	ciStatusOK = `{
 "v1": {
  "datasource": "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud][dsmode=net]",
  "init": {
   "errors": [],
   "finished": 1796013686.723304,
   "start": 1796013686.2353325
  },
  "init-local": {
   "errors": [],
   "finished": 1796013685.056148,
   "start": 1796013684.7537339
  },
  "modules-config": {
   "errors": [],
   "finished": 1796013688.7557611,
   "start": 1796013688.5748084
  },
  "modules-final": {
   "errors": [],
   "finished": 1796013689.6447465,
   "start": 1796013689.3504906
  },
  "modules-init": {
   "errors": [],
   "finished": null,
   "start": null
  },
  "stage": null
 }
}`
	ciFilesLine = "test ! -e /etc/cloud/cloud-init.disabled && test ! -e /run/cloud-init/disabled && cat /run/cloud-init/result.json /run/cloud-init/status.json"
)

// A run that changed nothing reads cloud-init's files and starts no
// Python; anything but a proven "done" is read with the long status.
func TestCloudInitFromFiles(t *testing.T) {
	running := strings.Replace(ciStatusOK, `"stage": null`, `"stage": "modules-config"`, 1)
	unfinished := strings.Replace(ciStatusOK, `"finished": 1796013689.6447465`, `"finished": null`, 1)
	stageError := strings.Replace(ciStatusOK, `"errors": [],
   "finished": 1796013688.7557611`, `"errors": ["('locale', ProcessExecutionError('locale-gen'))"],
   "finished": 1796013688.7557611`, 1)
	warning := strings.Replace(ciStatusOK, `"errors": [],
   "finished": 1796013689.6447465`, `"errors": [],
   "recoverable_errors": {"WARNING": ["Failed to write boot finished file"]},
   "finished": 1796013689.6447465`, 1)
	noWarning := strings.Replace(ciStatusOK, `"errors": [],
   "finished": 1796013689.6447465`, `"errors": [],
   "recoverable_errors": {},
   "finished": 1796013689.6447465`, 1)
	resultError := strings.Replace(ciResultOK, `"errors": []`, `"errors": ["('scripts_user', RuntimeError())"]`, 1)
	never := `{"v1": {"datasource": null, "init": {"errors": [], "start": null, "finished": null}, "stage": null}}`
	const doneDetails = "status: done\nlast_update: Mon, 30 Nov 2026 04:41:29 +0000\ndetail:\n" +
		"DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud][dsmode=net]\n(read from /run/cloud-init/result.json and status.json)"
	tests := []struct {
		name        string
		files       transport.Result
		polls       []fake.Call // the long status, when the files prove nothing
		wantDetails string
		wantErr     string
	}{
		{name: "done", files: exit(0, ciResultOK+"\n"+ciStatusOK+"\n", ""), wantDetails: doneDetails},
		{name: "done, files without final newlines", files: exit(0, ciResultOK+ciStatusOK, ""), wantDetails: doneDetails},
		{name: "done, an empty warning list", files: exit(0, ciResultOK+noWarning, ""), wantDetails: doneDetails},
		{name: "no result yet", files: exit(1, "", "cat: /run/cloud-init/result.json: No such file or directory\n"+ciStatusOK),
			polls: []fake.Call{{Line: ciStatusLine, Result: exit(0, ciDone224, "")}}, wantDetails: strings.TrimSpace(ciDone224)},
		{name: "disabled", files: exit(1, "", ""),
			polls: []fake.Call{{Line: ciStatusLine, Result: exit(0, "status: disabled\n", "")}}, wantDetails: "status: disabled"},
		{name: "a stage running", files: exit(0, ciResultOK+running, ""),
			polls: []fake.Call{{Line: ciStatusLine, Result: exit(0, ciDone224, "")}}, wantDetails: strings.TrimSpace(ciDone224)},
		{name: "a stage started, not finished", files: exit(0, ciResultOK+unfinished, ""),
			polls: []fake.Call{{Line: ciStatusLine, Result: exit(0, ciDone224, "")}}, wantDetails: strings.TrimSpace(ciDone224)},
		{name: "no stage ever ran", files: exit(0, ciResultOK+never, ""),
			polls: []fake.Call{{Line: ciStatusLine, Result: exit(0, ciDone224, "")}}, wantDetails: strings.TrimSpace(ciDone224)},
		{name: "not JSON", files: exit(0, "garbage", ""),
			polls: []fake.Call{{Line: ciStatusLine, Result: exit(0, ciDone224, "")}}, wantDetails: strings.TrimSpace(ciDone224)},
		{name: "a third document", files: exit(0, ciResultOK+ciStatusOK+ciStatusOK, ""),
			polls: []fake.Call{{Line: ciStatusLine, Result: exit(0, ciDone224, "")}}, wantDetails: strings.TrimSpace(ciDone224)},
		{name: "a warning is reported by cloud-init itself", files: exit(0, ciResultOK+warning, ""),
			polls: []fake.Call{
				{Line: ciStatusLine, Result: exit(2, ciDegrade, "")},
				{Line: ciTail, Result: exit(0, "Cloud-init v. 24.1 finished\n", "")},
			},
			wantDetails: strings.TrimSpace(ciDegrade) + "\n/var/log/cloud-init-output.log (last 25 lines):\nCloud-init v. 24.1 finished"},
		{name: "an error in a stage", files: exit(0, ciResultOK+stageError, ""),
			polls: []fake.Call{
				{Line: ciStatusLine, Result: exit(1, ciError, "")},
				{Line: ciTail, Result: exit(0, "locale-gen: not found\n", "")},
			},
			wantErr: "\nstatus: error\n"},
		{name: "an error in the result", files: exit(0, resultError+ciStatusOK, ""),
			polls: []fake.Call{
				{Line: ciStatusLine, Result: exit(1, ciError, "")},
				{Line: ciTail, Result: exit(0, "locale-gen: not found\n", "")},
			},
			wantErr: "\nstatus: error\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			task := w.task("cloud_init", map[string]any{"timeout_seconds": 60})
			if got := task.(tasks.GuestProber).GuestProbes(w.env); len(got) != 1 || got[0] != ciFilesLine {
				t.Fatalf("probes %q, want the files only", got)
			}
			w.probes(task, tt.files)
			w.guest.Expect(tt.polls...)
			c, err := task.Check(context.Background(), w.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Action != tasks.None || c.Details != tt.wantDetails {
				t.Errorf("got %s %q details %q\nwant none, details %q", c.Action, c.Summary, c.Details, tt.wantDetails)
			}
		})
	}
}

func TestCloudInitTimeout(t *testing.T) {
	w := newWorld(t)
	d := w.deps()
	d.poll = time.Hour // the 1 s deadline ends the first wait
	task, err := newCloudInit(d, map[string]any{"timeout_seconds": 1})
	if err != nil {
		t.Fatal(err)
	}
	w.env.Changed = true
	w.probes(task, exit(0, ciRunning, ""))
	_, err = task.Check(context.Background(), w.env)
	if err == nil || err.Error() != "cloud-init still running after 1s" {
		t.Errorf("error %v", err)
	}
}

func TestCloudInitVMNotRunning(t *testing.T) {
	w := newWorld(t)
	w.status = "stopped"
	task := w.task("cloud_init", map[string]any{"timeout_seconds": 300})
	c := w.check(task)
	if c.Action != tasks.Unknown || c.Summary != "will wait up to 5m0s for cloud-init to finish" {
		t.Errorf("%s %q", c.Action, c.Summary)
	}
	// Apply (after the start) waits for real; done means no error.
	w.guest.Expect(fake.Call{Line: ciStatusLine, Result: exit(0, ciDone224, "")})
	if err := w.apply(task, c); err != nil {
		t.Fatal(err)
	}
}

// An interrupted run is no timeout: the error says it was cancelled.
func TestCloudInitCancelled(t *testing.T) {
	w := newWorld(t)
	w.env.Changed = true
	task := w.task("cloud_init", map[string]any{"timeout_seconds": 60})
	w.probes(task, exit(0, ciRunning, ""))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := task.Check(ctx, w.env)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "still running") {
		t.Errorf("error %v, want the cancellation", err)
	}
}
