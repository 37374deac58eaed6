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
	"io/fs"
	"strconv"
	"time"

	"github.com/phoenix-hv/phoenix/transport"
)

const (
	// putChunk is what one qm guest exec --pass-stdin carries on the way in.
	putChunk = MaxStdin
	// getChunk is what one exec carries on the way out as base64: 8 MiB
	// becomes ~11 MiB of text, under qemu-ga's 16 MiB output cap.
	getChunk = 8 << 20
	// cleanupTimeout bounds removing the temp file of a failed Put.
	cleanupTimeout = 15 * time.Second
)

// Put writes r to path in the guest atomically: a temp file next to path,
// created unreadable to others (umask 077: the content may be a secret),
// its sha256 checked in the guest, chmod, then mv -f over path. Content
// travels on exec stdin (binary-safe): up to MaxStdin bytes in one round
// trip that also commits, more in MaxStdin chunks and a commit.
func (t *Transport) Put(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	tmp := transport.CommitTemp(path)
	sum := sha256.New()
	first := make([]byte, putChunk+1)
	n, err := io.ReadFull(r, first)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		sum.Write(first[:n])
		line := "umask 077 && cat > " + transport.Quote(tmp) + " || exit 1; " +
			transport.CommitScript(tmp, path, hex.EncodeToString(sum.Sum(nil)), mode)
		_, err = t.Run(ctx, transport.Cmd{Line: line, Stdin: bytes.NewReader(first[:n])})
		if err == nil {
			return nil
		}
	case err != nil:
		return fmt.Errorf("put %s: read: %w", path, err)
	default:
		err = t.putChunks(ctx, tmp, io.MultiReader(bytes.NewReader(first), r), sum)
		if err == nil {
			// The commit script removes the temp file itself when it fails.
			if _, err := t.Run(ctx, transport.Cmd{Line: transport.CommitScript(tmp, path, hex.EncodeToString(sum.Sum(nil)), mode)}); err != nil {
				return fmt.Errorf("put %s: %w", path, err)
			}
			return nil
		}
	}
	if !errors.Is(err, transport.ErrAgentUnavailable) {
		// Best effort, also when ctx has ended (a cancelled run must not
		// leave the temp file behind); the error that matters is the one
		// already in hand.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		t.Run(cctx, transport.Cmd{Line: transport.Command("rm", "-f", tmp)})
		cancel()
	}
	return fmt.Errorf("put %s: %w", path, transport.MarkNotExist(err))
}

// putChunks writes r to file through exec stdin, putChunk bytes a call,
// adding what it sent to sum.
func (t *Transport) putChunks(ctx context.Context, file string, r io.Reader, sum hash.Hash) error {
	buf := make([]byte, putChunk)
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			sum.Write(buf[:n])
			line := "cat >> " + transport.Quote(file)
			if i == 0 {
				// Created unreadable to others: the mode is set only at the end.
				line = "umask 077 && cat > " + transport.Quote(file)
			}
			if _, rerr := t.Run(ctx, transport.Cmd{Line: line, Stdin: bytes.NewReader(buf[:n])}); rerr != nil {
				return fmt.Errorf("chunk %d: %w", i+1, rerr)
			}
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case err != nil:
			return fmt.Errorf("read: %w", err)
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
		t.apiPath("file-read"), "--file", path, "--output-format", "json")})
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
		res, err := t.Run(ctx, transport.Cmd{Line: line})
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
	res, err := t.Run(ctx, transport.Cmd{Line: "sha256sum < " + transport.Quote(path)})
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
