package transport_test

import (
	"context"
	"strings"
	"testing"

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
