package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

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
)

// Put writes r to path in the guest atomically and without following a
// symlink planted by a guest user (transport.PutChunks): the content
// travels on exec stdin (binary-safe); up to MaxStdin bytes take one round
// trip that also commits, more take MaxStdin chunks and a commit. Only one
// chunk is held in memory; each command is bounded by the bytes it moves
// (Transfer).
func (t *Transport) Put(ctx context.Context, path string, r io.Reader, a transport.Attrs) error {
	if s := t.probe(ctx); s != nil {
		return s.Put(ctx, path, r, a)
	}
	return transport.PutChunks(ctx, t, path, r, a, putChunk, t.Transfer, t.Rand)
}

// Get copies path from the guest to w. w is written only once the whole file
// has arrived, so a failed Get writes nothing (a caller may retry elsewhere).
// Up to 16 MiB come in one agent/file-read; a bigger file is read again in
// base64 chunks through exec and checked against its sha256 in the guest.
func (t *Transport) Get(ctx context.Context, path string, w io.Writer) error {
	if s := t.sock(); s != nil {
		// A failed Get wrote nothing to w: qm can do it again.
		if err := s.Get(ctx, path, w); t.usable(err) {
			return err
		}
	}
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
		return transport.GetChunks(ctx, t, path, getChunk, t.Transfer)
	}
	b := latin1(fr.Content)
	if len(b) != fr.BytesRead {
		return nil, fmt.Errorf("agent file-read: got %d bytes, agent says %d", len(b), fr.BytesRead)
	}
	return b, nil
}

func (t *Transport) apiPath(endpoint string) string {
	node := t.PVENode
	if node == "" {
		node = "localhost" // pvesh's name for the node it runs on
	}
	return "/nodes/" + node + "/qemu/" + strconv.Itoa(t.VMID) + "/agent/" + endpoint
}
