package pvesim

import (
	"fmt"
	"io"
)

// randomMAC is a MAC with Proxmox's default prefix BC:24:11.
func (s *Sim) randomMAC() (string, error) {
	var b [3]byte
	if _, err := io.ReadFull(s.Rand, b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", b[0], b[1], b[2]), nil
}

// randomUUID is a random (version 4) UUID.
func (s *Sim) randomUUID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.Rand, b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
