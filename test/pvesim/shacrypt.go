package pvesim

import (
	"crypto/sha256"
	"io"
	"regexp"
	"strings"
)

// cipassword is stored as a SHA-256 crypt hash ($5$salt$hash), the format
// PVE's encrypt_pw writes and cloud-init hands to chpasswd -e, so the
// password really works in the guest.

var cryptedRE = regexp.MustCompile(`^\$(?:[156]|2[ay])(\$.+){2}`)

// isCrypted reports a value that is already a crypt hash (stored as is).
func isCrypted(pw string) bool { return cryptedRE.MatchString(pw) }

const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// sha256Crypt implements Drepper's SHA-crypt with SHA-256 and the default
// 5000 rounds.
func sha256Crypt(password, salt string) string {
	if len(salt) > 16 {
		salt = salt[:16]
	}
	pw, sl := []byte(password), []byte(salt)

	b := sha256.New()
	b.Write(pw)
	b.Write(sl)
	b.Write(pw)
	sumB := b.Sum(nil)

	a := sha256.New()
	a.Write(pw)
	a.Write(sl)
	for i := len(pw); i > 0; i -= 32 {
		a.Write(sumB[:min(i, 32)])
	}
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			a.Write(sumB)
		} else {
			a.Write(pw)
		}
	}
	sumA := a.Sum(nil)

	dp := sha256.New()
	for range pw {
		dp.Write(pw)
	}
	p := repeatTo(dp.Sum(nil), len(pw))

	ds := sha256.New()
	for i := 0; i < 16+int(sumA[0]); i++ {
		ds.Write(sl)
	}
	sb := repeatTo(ds.Sum(nil), len(sl))

	c := sumA
	for i := 0; i < 5000; i++ {
		h := sha256.New()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sb)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(nil)
	}

	var out strings.Builder
	out.WriteString("$5$" + salt + "$")
	enc := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for ; n > 0; n-- {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	order := [][3]int{{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14}, {15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29}}
	for _, o := range order {
		enc(c[o[0]], c[o[1]], c[o[2]], 4)
	}
	enc(0, c[31], c[30], 3)
	return out.String()
}

func repeatTo(sum []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, sum[:min(32, n-len(out))]...)
	}
	return out
}

// encryptPassword hashes pw with a random salt of 8 characters.
func (s *Sim) encryptPassword(pw string) (string, error) {
	var raw [8]byte
	if _, err := io.ReadFull(s.Rand, raw[:]); err != nil {
		return "", err
	}
	salt := make([]byte, 8)
	for i, r := range raw {
		salt[i] = cryptAlphabet[int(r)%len(cryptAlphabet)]
	}
	return sha256Crypt(pw, string(salt)), nil
}
