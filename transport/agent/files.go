package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

const (
	// putChunk is what one qm guest exec --pass-stdin carries on the way in.
	putChunk = MaxStdin
	// getChunk is what one exec carries on the way out as base64: 8 MiB
	// becomes ~11 MiB of text, under qemu-ga's 16 MiB output cap.
	getChunk = 8 << 20
	// readCap is the most one agent/file-read returns (qemu-ga's limit).
	readCap = 16 << 20
	// cleanupTimeout bounds removing the temp file of a failed Put.
	cleanupTimeout = 15 * time.Second
)

// Put writes r to path in the guest atomically and without following a
// symlink planted by a guest user (transport.Upload): the content travels on
// exec stdin (binary-safe); up to MaxStdin bytes take one round trip that
// also commits, more take MaxStdin chunks and a commit. Only one chunk is
// held in memory; each command is bounded by the bytes it moves (Transfer).
func (t *Transport) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	u, err := transport.NewUpload(path, t.Rand)
	if err != nil {
		return err
	}
	sum := sha256.New()
	first := make([]byte, putChunk+1)
	n, err := io.ReadFull(r, first)
	id := ""
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		sum.Write(first[:n])
		_, err = t.Run(ctx, transport.Cmd{Line: u.Once(hex.EncodeToString(sum.Sum(nil)), a), Stdin: bytes.NewReader(first[:n]), Timeout: t.Transfer.Limit(int64(n))})
		if err == nil {
			return nil
		}
	case err != nil:
		return fmt.Errorf("put %s: read: %w", path, err)
	default:
		var size int64
		id, size, err = t.putChunks(ctx, u, io.MultiReader(bytes.NewReader(first), r), sum)
		if err == nil {
			// The commit reads the file once more (sha256) and renames it;
			// it cleans up after itself when it fails.
			_, err := t.Run(ctx, transport.Cmd{Line: u.Commit(id, hex.EncodeToString(sum.Sum(nil)), a), Timeout: t.Transfer.Limit(size)})
			return wrapPut(path, err)
		}
	}
	if !errors.Is(err, transport.ErrAgentUnavailable) {
		// Best effort, also when ctx has ended (a cancelled run must not
		// leave the upload behind), and also after a command that failed
		// in the guest and cleaned up itself (then this finds nothing):
		// the error that matters is in hand.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		t.Run(cctx, transport.Cmd{Line: u.Abort(id)})
		cancel()
	}
	return wrapPut(path, err)
}

func wrapPut(path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("put %s: %w", path, transport.MarkNotExist(err))
}

// putChunks writes r into the upload through exec stdin, putChunk bytes a
// call, adding what it sent to sum. It returns the upload's directory id
// and the bytes sent.
func (t *Transport) putChunks(ctx context.Context, u transport.Upload, r io.Reader, sum hash.Hash) (id string, size int64, err error) {
	buf := make([]byte, putChunk)
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			sum.Write(buf[:n])
			size += int64(n)
			line := u.Append(id)
			if i == 0 {
				line = u.Begin()
			}
			res, rerr := t.Run(ctx, transport.Cmd{Line: line, Stdin: bytes.NewReader(buf[:n]), Timeout: t.Transfer.Limit(int64(n))})
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

// Get copies path from the guest to w. w is written only once the whole file
// has arrived, so a failed Get writes nothing (a caller may retry elsewhere).
// Up to 16 MiB come in one agent/file-read; a bigger file is read again in
// base64 chunks through exec and checked against its sha256 in the guest.
func (t *Transport) Get(ctx context.Context, path string, w io.Writer) error {
	b, err := t.get(ctx, path)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	_, err = w.Write(b)
	return err
}

func (t *Transport) get(ctx context.Context, path string) ([]byte, error) {
	res, err := t.node(ctx, "agent file-read", transport.Cmd{Line: transport.Command("pvesh", "get",
		t.apiPath("file-read"), "--file", path, "--output-format", "json"), Timeout: t.Transfer.Limit(readCap)})
	if err != nil {
		return nil, err
	}
	var fr struct {
		BytesRead int    `json:"bytes-read"`
		Content   string `json:"content"`
		Truncated flag   `json:"truncated"`
	}
	if err := json.Unmarshal(res.Stdout, &fr); err != nil {
		return nil, fmt.Errorf("agent file-read: %w in %q", err, transport.Shorten(string(res.Stdout), 200))
	}
	if fr.Truncated {
		return t.getChunks(ctx, path)
	}
	b := latin1(fr.Content)
	if len(b) != fr.BytesRead {
		return nil, fmt.Errorf("agent file-read: got %d bytes, agent says %d", len(b), fr.BytesRead)
	}
	return b, nil
}

// getChunks reads path through exec as base64, getChunk bytes a call, then
// compares the sha256 of what arrived with the guest's.
func (t *Transport) getChunks(ctx context.Context, path string) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		line := fmt.Sprintf("dd if=%s bs=%d skip=%d count=1 iflag=fullblock status=none | base64 -w0",
			transport.Quote(path), getChunk, i)
		res, err := t.Run(ctx, transport.Cmd{Line: line, Timeout: t.Transfer.Limit(getChunk)})
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i+1, err)
		}
		b, err := base64.StdEncoding.DecodeString(string(res.Stdout))
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i+1, err)
		}
		out = append(out, b...)
		if len(b) < getChunk {
			break
		}
	}
	res, err := t.Run(ctx, transport.Cmd{Line: "sha256sum < " + transport.Quote(path), Timeout: t.Transfer.Limit(int64(len(out)))})
	if err != nil {
		return nil, err
	}
	got := sha256.Sum256(out)
	if want, _, _ := bytes.Cut(res.Stdout, []byte(" ")); string(want) != hex.EncodeToString(got[:]) {
		return nil, fmt.Errorf("sha256 of %d bytes read is %x, the guest says %s (file changed while read?)", len(out), got, want)
	}
	return out, nil
}

func (t *Transport) apiPath(endpoint string) string {
	node := t.PVENode
	if node == "" {
		node = "localhost" // pvesh's name for the node it runs on
	}
	return "/nodes/" + node + "/qemu/" + strconv.Itoa(t.VMID) + "/agent/" + endpoint
}
