package fallback

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"testing"
)

// Finding 9 of issue 8: content that may have to be sent again is kept in
// 1 MiB of memory and a temp file, not whole in memory, and the resend has
// every byte: what the agent read, then the rest of the source.
func TestInputKeptForAResend(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		agentRead int // what the agent read before it stopped answering
	}{
		{"small, read whole", 100, 100},
		{"small, half read", 100, 50},
		{"big, read whole", 5<<20 + 7, 5<<20 + 7},
		{"big, stopped after 3 MiB", 5<<20 + 7, 3 << 20},
		{"big, nothing read", 5 << 20, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			rand.Read(data)
			in := &input{r: io.MultiReader(bytes.NewReader(data))} // not seekable
			defer in.Close()
			first, err := in.reader(true)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(io.Discard, first, int64(tc.agentRead)); err != nil {
				t.Fatal(err)
			}
			if in.mem.Len() > memoryKept {
				t.Errorf("%d bytes kept in memory, want at most %d", in.mem.Len(), memoryKept)
			}
			again, err := in.reader(false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(again)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("resend: %d bytes, equal %v, %v", len(got), bytes.Equal(got, data), err)
			}
			if tc.agentRead > memoryKept {
				if in.file == nil {
					t.Fatal("no temp file for a big input")
				}
				if _, err := os.Stat(in.file.Name()); !os.IsNotExist(err) {
					t.Errorf("the temp file %s has a name while in use: %v", in.file.Name(), err)
				}
			}
		})
	}
}

// Over SSH first, the input is passed through, nothing kept.
func TestInputNotKeptOverSSH(t *testing.T) {
	src := bytes.NewReader([]byte("abc"))
	in := &input{r: src}
	if r, _ := in.reader(false); r != io.Reader(src) {
		t.Fatal("the source was wrapped")
	}
	if _, err := in.reader(false); err == nil {
		t.Fatal("a second reader of an input not kept")
	}
}
