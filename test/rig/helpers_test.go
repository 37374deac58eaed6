package rig

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

func tarModes(t *testing.T, b []byte) map[string]int64 {
	t.Helper()
	modes := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return modes
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[h.Name] = h.Mode
	}
}
