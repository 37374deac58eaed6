package transport_test

import (
	"context"
	"fmt"
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
	for name, batch := range map[string]func(context.Context, transport.Runner, []string) ([]transport.Result, error){
		"Batch": transport.Batch, "BatchParallel": transport.BatchParallel,
	} {
		t.Run(name, func(t *testing.T) { testBatchKeepsEachResult(t, batch) })
	}
}

func testBatchKeepsEachResult(t *testing.T, batch func(context.Context, transport.Runner, []string) ([]transport.Result, error)) {
	lines := []string{
		"echo out; echo err >&2",
		"printf 'no newline'; exit 3",
		"printf '\\000\\001binary\\n'",
		"true",
		"cat", // stdin is /dev/null: must not hang
		"sleep 0.2; echo 'it''s' \"$t\"; exit 255", // quoting; the script's own variables do not leak in
	}
	got, err := batch(context.Background(), local.Shell{}, lines)
	if err != nil {
		t.Fatal(err)
	}
	want := []transport.Result{
		{Stdout: []byte("out\n"), Stderr: []byte("err\n")},
		{Stdout: []byte("no newline"), Stderr: []byte{}, ExitCode: 3},
		{Stdout: []byte("\x00\x01binary\n"), Stderr: []byte{}},
		{Stdout: []byte{}, Stderr: []byte{}},
		{Stdout: []byte{}, Stderr: []byte{}},
		{Stdout: []byte("its \n"), Stderr: []byte{}, ExitCode: 255},
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

// BatchParallel runs its lines at the same time: three lines of 0.5 s
// each end together, and each sees the others' effects only by chance.
func TestBatchParallelRunsConcurrently(t *testing.T) {
	dir := t.TempDir()
	lines := make([]string, 3)
	for i := range lines {
		// Each line waits until all three have started.
		lines[i] = fmt.Sprintf("touch %s/%d; n=0; while [ $(ls %s | wc -l) -lt 3 ]; do sleep 0.05; n=$((n+1)); [ $n -lt 200 ] || exit 9; done; echo %d", dir, i, dir, i)
	}
	got, err := transport.BatchParallel(context.Background(), local.Shell{}, lines)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.ExitCode != 0 || string(r.Stdout) != fmt.Sprintf("%d\n", i) {
			t.Errorf("line %d: exit %d, stdout %q: the lines did not run at the same time", i, r.ExitCode, r.Stdout)
		}
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
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) { testBatchRemovesItsTempDirWhenStopped(t, script) })
	}
}

// scripts are the two kinds of batch.
var scripts = map[string]func([]string) string{"Batch": transport.BatchScript, "BatchParallel": transport.BatchParallelScript}

func testBatchRemovesItsTempDirWhenStopped(t *testing.T, batchScript func([]string) string) {
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
				script := batchScript([]string{"true", "touch " + transport.Quote(started) + "; sleep 30", "true"})
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
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) { testBatchRemovesItsTempDirWhenOutputBreaks(t, script) })
	}
}

func testBatchRemovesItsTempDirWhenOutputBreaks(t *testing.T, batchScript func([]string) string) {
	tmp := t.TempDir()
	script := batchScript([]string{"echo first", "sleep 0.3; echo second"})
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
