package fallback

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// memoryKept is how much of an input is kept in memory for a resend; the
// rest goes to a temp file. Commands' stdin through the agent is at most
// 1 MiB, so only file content of more ever touches the disk.
const memoryKept = 1 << 20

// input is a command's stdin or a file's content. What the agent reads of
// it is kept, so that, should the agent stop answering, it can be sent
// again whole over SSH: the first memoryKept bytes in memory, the rest in
// a temp file on this machine (0600, unlinked at once where the system
// allows, so nothing is left behind even when phoenix is killed). Memory
// stays flat whatever the size. Over SSH first nothing is kept.
type input struct {
	r    io.Reader
	mem  bytes.Buffer
	file *os.File
	size int64 // bytes in file
	err  error // a failure to keep what was read
	used bool  // reader was called before
	kept bool  // what was read so far is kept
}

// reader is the input from its start. keep says a resend may follow.
// Only one resend is made (do tries the agent, then SSH), so a resend is
// not kept.
func (in *input) reader(keep bool) (io.Reader, error) {
	if !in.used {
		in.used, in.kept = true, keep
		if !keep {
			return in.r, nil
		}
		return keeping{in}, nil
	}
	if !in.kept {
		return nil, fmt.Errorf("input already sent and not kept")
	}
	if in.err != nil {
		return nil, in.err
	}
	in.kept = false
	parts := []io.Reader{bytes.NewReader(in.mem.Bytes())}
	if in.file != nil {
		parts = append(parts, io.NewSectionReader(in.file, 0, in.size))
	}
	return io.MultiReader(append(parts, in.r)...), nil
}

// Close removes the temp file.
func (in *input) Close() error {
	if in.file == nil {
		return nil
	}
	os.Remove(in.file.Name()) // already gone where unlinking an open file works
	return in.file.Close()
}

// keeping reads the source and keeps what it reads.
type keeping struct{ in *input }

func (k keeping) Read(p []byte) (int, error) {
	n, err := k.in.r.Read(p)
	if n > 0 {
		if kerr := k.in.keep(p[:n]); kerr != nil {
			return n, kerr
		}
	}
	return n, err
}

func (in *input) keep(b []byte) error {
	if room := memoryKept - in.mem.Len(); room > 0 {
		k := min(room, len(b))
		in.mem.Write(b[:k])
		b = b[k:]
	}
	if len(b) == 0 {
		return nil
	}
	if in.file == nil {
		f, err := os.CreateTemp("", "phoenix-resend-*")
		if err != nil {
			in.err = fmt.Errorf("keep the input for a resend: %w", err)
			return in.err
		}
		os.Remove(f.Name())
		in.file = f
	}
	if _, err := in.file.WriteAt(b, in.size); err != nil {
		in.err = fmt.Errorf("keep the input for a resend: %w", err)
		return in.err
	}
	in.size += int64(len(b))
	return nil
}
