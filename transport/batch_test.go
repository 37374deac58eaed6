package transport_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
)

func TestBatchKeepsEachResult(t *testing.T) {
	lines := []string{
		"echo out; echo err >&2",
		"printf 'no newline'; exit 3",
		"printf '\\000\\001binary\\n'",
		"true",
		"cat", // stdin is /dev/null: must not hang
	}
	got, err := transport.Batch(context.Background(), local.Shell{}, lines)
	if err != nil {
		t.Fatal(err)
	}
	want := []transport.Result{
		{Stdout: []byte("out\n"), Stderr: []byte("err\n")},
		{Stdout: []byte("no newline"), Stderr: []byte{}, ExitCode: 3},
		{Stdout: []byte("\x00\x01binary\n"), Stderr: []byte{}},
		{Stdout: []byte{}, Stderr: []byte{}},
		{Stdout: []byte{}, Stderr: []byte{}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i].Stdout) != string(want[i].Stdout) || string(got[i].Stderr) != string(want[i].Stderr) || got[i].ExitCode != want[i].ExitCode {
			t.Errorf("result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := got[1].Err(lines[1]); transport.ExitCode(err) != 3 {
		t.Errorf("Err() = %v, want exit 3", err)
	}
}

func TestParseBatchRejectsShortOutput(t *testing.T) {
	if _, err := transport.ParseBatch([]byte("0 10 0\nabc"), 1); err == nil {
		t.Fatal("want error for truncated output")
	}
	if _, err := transport.ParseBatch(nil, 1); err == nil {
		t.Fatal("want error for missing header")
	}
}

func TestRedact(t *testing.T) {
	line := transport.Command("qm", "set", "100", "--cipassword", "s3cret pw")
	cmd := transport.Cmd{Line: line, Secrets: []string{"s3cret pw"}}
	if got := cmd.Printable(); got != "qm set 100 --cipassword ********" {
		t.Fatalf("Printable() = %q", got)
	}
}

func TestRequotedSecrets(t *testing.T) {
	if got := transport.RequotedSecrets([]string{""}); len(got) != 0 {
		t.Errorf("an empty secret gives %q, want nothing to mask", got)
	}
	for _, secret := range []string{"s3cret", "two words", "it's mine", `a'b"c$d`} {
		line := transport.Command("tool", "--password", secret) + " # " + secret
		outer := transport.Command("sh", "-c", line)
		got := transport.Redact(outer, transport.RequotedSecrets([]string{secret}))
		bare := strings.NewReplacer("'", "", `\`, "")
		if strings.Contains(bare.Replace(got), bare.Replace(secret)) || strings.Count(got, "********") != 2 {
			t.Errorf("secret %q: %s", secret, got)
		}
	}
}

// TestBatchRemovesItsTempDirWhenStopped: however the batch is stopped while
// a command runs (SIGTERM or SIGINT to its process group as sshd sends them,
// SIGHUP), its temp directory is gone, in dash and in bash.
func TestBatchRemovesItsTempDirWhenStopped(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		path, err := exec.LookPath(shell)
		if err != nil {
			t.Errorf("%s: %v", shell, err)
			continue
		}
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
			t.Run(shell+"/"+sig.String(), func(t *testing.T) {
				tmp := t.TempDir()
				started := filepath.Join(t.TempDir(), "started")
				script := transport.BatchScript([]string{"true", "touch " + transport.Quote(started) + "; sleep 30", "true"})
				cmd := exec.Command(path, "-c", script)
				cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					if _, err := os.Stat(started); err == nil {
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatal("the batch's command never started")
					}
				}
				if entries, _ := os.ReadDir(tmp); len(entries) != 1 {
					t.Fatalf("TMPDIR holds %d entries while the batch runs, want its temp dir", len(entries))
				}
				syscall.Kill(-cmd.Process.Pid, sig)
				err := cmd.Wait()
				if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
					t.Errorf("after %s the batch left %s in TMPDIR", sig, entries[0].Name())
				}
				if cmd.ProcessState.ExitCode() == 0 {
					t.Errorf("a stopped batch exited 0 (%v)", err)
				}
			})
		}
	}
}

// TestBatchRemovesItsTempDirWhenOutputBreaks: the reader of the batch's
// output goes away (a dropped connection) and the batch's next write fails.
func TestBatchRemovesItsTempDirWhenOutputBreaks(t *testing.T) {
	tmp := t.TempDir()
	script := transport.BatchScript([]string{"echo first", "sleep 0.3; echo second"})
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r.Close() // before the batch writes anything
	cmd.Wait()
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("with its output gone the batch left %s in TMPDIR", entries[0].Name())
	}
}
