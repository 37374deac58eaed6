package pvesim

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// pvesim's disk image format. A VM disk here is a container's root file
// system, so the image format that stands for qcow2 is a tar archive of a
// root file system, optionally gzip-compressed (what `docker export` and
// `docker import` speak). Any other file is raw data: it imports (qemu-img
// reads every file as raw) but gives a disk that boots nothing.

// imageInfo is pvesim's `qemu-img info` of a file.
type imageInfo struct {
	format      string // "qcow2" for a root file system archive, else "raw"
	virtualSize int64  // bytes
}

func (i imageInfo) bootable() bool { return i.format == "qcow2" }

const mib = 1 << 20

func roundUpMiB(n int64) int64 { return (n + mib - 1) / mib * mib }

// inspectImage reads a file's format and virtual size: a tar's size (of a
// gzip'ed tar: the uncompressed size in the gzip trailer) rounded up to a
// MiB, a raw file's size as it is.
func inspectImage(path string) (imageInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return imageInfo{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return imageInfo{}, err
	}
	raw := imageInfo{format: "raw", virtualSize: st.Size()}
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return imageInfo{}, err
	}
	head = head[:n]
	if isTarHeader(head) {
		return imageInfo{format: "qcow2", virtualSize: roundUpMiB(st.Size())}, nil
	}
	if n < 2 || head[0] != 0x1f || head[1] != 0x8b || st.Size() < 18 {
		return raw, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return imageInfo{}, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return raw, nil
	}
	inner := make([]byte, 512)
	m, _ := io.ReadFull(zr, inner)
	if !isTarHeader(inner[:m]) {
		return raw, nil
	}
	var trailer [4]byte
	if _, err := f.ReadAt(trailer[:], st.Size()-4); err != nil {
		return imageInfo{}, err
	}
	return imageInfo{format: "qcow2", virtualSize: roundUpMiB(int64(binary.LittleEndian.Uint32(trailer[:])))}, nil
}

// isTarHeader reports a POSIX/GNU tar header block ("ustar" magic).
func isTarHeader(b []byte) bool {
	return len(b) >= 262 && bytes.Equal(b[257:262], []byte("ustar"))
}

// checkImageFormat is `qemu-img info -f FORMAT` on a downloaded file: raw
// takes anything; qcow2 (and vmdk, ova) must be pvesim's image format.
// path is the file on this machine, shown its name on the node.
func checkImageFormat(path, shown, format string) error {
	info, err := inspectImage(path)
	if err != nil {
		return err
	}
	if format != "raw" && !info.bootable() {
		return fmt.Errorf("qemu-img: Could not open '%s': Image is not in %s format", shown, format)
	}
	return nil
}
