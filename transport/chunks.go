package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

// cleanupTimeout bounds removing what a failed PutChunks left.
const cleanupTimeout = 15 * time.Second

// PutChunks writes src to path through commands that r runs as root (the
// guest agent has no file channel that sets modes atomically), with an
// Upload: never through a symlink a guest user planted. The content travels
// on the commands' stdin, at most chunk bytes a command: up to chunk bytes
// take one command that also commits, more take chunk-sized appends and a
// commit that checks the sha256 of all of it. Only one chunk is held in
// memory; each command is bounded by the bytes it moves (pace). random
// names the upload's private directory (nil: crypto/rand).
func PutChunks(ctx context.Context, r Runner, path string, src io.Reader, a Attrs, chunk int, pace Pace, random io.Reader) error {
	u, err := NewUpload(path, random)
	if err != nil {
		return err
	}
	sum := sha256.New()
	first := make([]byte, chunk+1)
	n, err := io.ReadFull(src, first)
	id := ""
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		sum.Write(first[:n])
		_, err = r.Run(ctx, Cmd{Line: u.Once(hex.EncodeToString(sum.Sum(nil)), a), Stdin: bytes.NewReader(first[:n]), Timeout: pace.Limit(int64(n))})
		if err == nil {
			return nil
		}
	case err != nil:
		return fmt.Errorf("put %s: read: %w", path, err)
	default:
		var size int64
		id, size, err = putAppends(ctx, r, u, io.MultiReader(bytes.NewReader(first), src), sum, chunk, pace)
		if err == nil {
			// The commit reads the file once more (sha256) and renames it;
			// it cleans up after itself when it fails.
			_, err := r.Run(ctx, Cmd{Line: u.Commit(id, hex.EncodeToString(sum.Sum(nil)), a), Timeout: pace.Limit(size)})
			return wrapPut(path, err)
		}
	}
	if !errors.Is(err, ErrAgentUnavailable) {
		// Best effort, also when ctx has ended (a cancelled run must not
		// leave the upload behind), and also after a command that failed
		// and cleaned up itself (then this finds nothing): the error that
		// matters is in hand.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		r.Run(cctx, Cmd{Line: u.Abort(id)})
		cancel()
	}
	return wrapPut(path, err)
}

func wrapPut(path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("put %s: %w", path, MarkNotExist(err))
}

// putAppends writes src into the upload, chunk bytes a command, adding what
// it sent to sum. It returns the upload's directory id and the bytes sent.
func putAppends(ctx context.Context, r Runner, u Upload, src io.Reader, sum hash.Hash, chunk int, pace Pace) (id string, size int64, err error) {
	buf := make([]byte, chunk)
	for i := 0; ; i++ {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			sum.Write(buf[:n])
			size += int64(n)
			line := u.Append(id)
			if i == 0 {
				line = u.Begin()
			}
			res, rerr := r.Run(ctx, Cmd{Line: line, Stdin: bytes.NewReader(buf[:n]), Timeout: pace.Limit(int64(n))})
			if i == 0 {
				id = strings.TrimSpace(string(res.Stdout))
			}
			if rerr != nil {
				return id, size, fmt.Errorf("chunk %d: %w", i+1, rerr)
			}
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return id, size, nil
		case err != nil:
			return id, size, fmt.Errorf("read: %w", err)
		}
	}
}

// GetChunks reads path through commands r runs, chunk bytes a command as
// base64 (any output limit of the channel then holds chunk*4/3 bytes), then
// compares the sha256 of what arrived with the one the target computes, so
// a file changed while it was read is an error, not a mix. Each command is
// bounded by the bytes it moves (pace).
func GetChunks(ctx context.Context, r Runner, path string, chunk int, pace Pace) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		line := fmt.Sprintf("dd if=%s bs=%d skip=%d count=1 iflag=fullblock status=none | base64 -w0",
			Quote(path), chunk, i)
		res, err := r.Run(ctx, Cmd{Line: line, Timeout: pace.Limit(int64(chunk))})
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i+1, err)
		}
		b, err := base64.StdEncoding.DecodeString(string(res.Stdout))
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i+1, err)
		}
		out = append(out, b...)
		if len(b) < chunk {
			break
		}
	}
	res, err := r.Run(ctx, Cmd{Line: "sha256sum < " + Quote(path), Timeout: pace.Limit(int64(len(out)))})
	if err != nil {
		return nil, err
	}
	got := sha256.Sum256(out)
	if want, _, _ := bytes.Cut(res.Stdout, []byte(" ")); string(want) != hex.EncodeToString(got[:]) {
		return nil, fmt.Errorf("sha256 of %d bytes read is %x, the target says %s (file changed while read?)", len(out), got, want)
	}
	return out, nil
}
