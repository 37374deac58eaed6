package guest

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Entry is one /etc/fstab line.
type Entry struct {
	Source     string // "10.0.0.2:/export/8101"
	MountPoint string
	FSType     string
	Options    string
	Dump       int
	Pass       int
}

// Line is the entry as fstab spells it, fields escaped, without line end.
func (e Entry) Line() string {
	return strings.Join([]string{
		escapeField(e.Source), escapeField(e.MountPoint), escapeField(e.FSType), escapeField(e.Options),
		strconv.Itoa(e.Dump), strconv.Itoa(e.Pass),
	}, " ")
}

// fields are the six columns compared for equality; missing dump and pass
// read as 0, as mount(8) does.
func (e Entry) fields() [6]string {
	return [6]string{e.Source, e.MountPoint, e.FSType, e.Options, strconv.Itoa(e.Dump), strconv.Itoa(e.Pass)}
}

// Marker is the mount option on every fstab line phoenix writes: the lines
// it may replace later even when they are not NFS. An "x-" option is
// mount(8)'s namespace for application options: libmount keeps it out of
// mount(2) and out of the options the mount.<type> helper gets (mount.nfs
// never sees it), findmnt --fstab and tools that rewrite fstab keep it
// with the other options. A trailing "# comment" would not survive: fstab(5)
// has comment lines only, and parsers differ on text after the sixth field.
const Marker = "x-phoenix"

// EditFstab makes old hold exactly one line for entry's mount point, equal
// to entry with Marker added to its options: a differing line is replaced in
// place, duplicates for the mount point are dropped, a missing one is
// appended. Only NFS lines and lines phoenix wrote are replaced: when another
// filesystem's line holds the mount point, EditFstab returns an error naming
// that line and old unchanged. Comments and every other line stay byte for
// byte. changed is false when old already had it.
func EditFstab(old []byte, entry Entry) (new []byte, changed bool, err error) {
	entry = entry.marked()
	want := entry.fields()
	lines := splitLines(old)
	for i, l := range lines {
		if f, ok := parseFstabLine(l); ok && sameMountPoint(f[1], entry.MountPoint) && !replaceable(f) {
			return old, false, fmt.Errorf("line %d mounts %s (%s) on %s, which phoenix does not replace: only NFS lines "+
				"and lines it wrote (option %s) are its own: %q", i+1, f[0], f[2], f[1], Marker, strings.TrimRight(string(l), "\r\n"))
		}
	}
	eol := "\n"
	if len(lines) > 0 && bytes.HasSuffix(lines[0], []byte("\r\n")) {
		eol = "\r\n" // keep a CRLF file CRLF
	}

	var out bytes.Buffer
	placed := false
	for _, l := range lines {
		f, ok := parseFstabLine(l)
		if !ok || !sameMountPoint(f[1], entry.MountPoint) {
			out.Write(l)
			continue
		}
		if placed {
			changed = true // a duplicate for the mount point
			continue
		}
		placed = true
		if f != want {
			changed = true
			out.WriteString(entry.Line())
			out.WriteString(lineEnd(l, eol))
			continue
		}
		out.Write(l)
	}
	if !placed {
		changed = true
		if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			// End the last line. A CR already there becomes the CR of its
			// CRLF, as parseFstabLine reads it, so the line keeps its meaning.
			if bytes.HasSuffix(out.Bytes(), []byte("\r")) {
				out.WriteString("\n")
			} else {
				out.WriteString(eol)
			}
		}
		out.WriteString(entry.Line())
		out.WriteString(eol)
	}
	if !changed {
		return old, false, nil
	}
	return out.Bytes(), true, nil
}

// marked is e with Marker in its options (once).
func (e Entry) marked() Entry {
	switch {
	case e.Options == "":
		e.Options = Marker
	case !hasOption(e.Options, Marker):
		e.Options += "," + Marker
	}
	return e
}

// replaceable reports whether phoenix may replace a line: an NFS mount or
// one it wrote.
func replaceable(f [6]string) bool {
	return isNFS(f[2]) || hasOption(f[3], Marker)
}

func isNFS(fstype string) bool { return fstype == "nfs" || fstype == "nfs4" }

// hasOption reports whether the comma-separated options hold opt.
func hasOption(options, opt string) bool {
	for _, o := range strings.Split(options, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// splitLines splits b after every "\n"; the last line may lack one.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, b)
			break
		}
		lines = append(lines, b[:i+1])
		b = b[i+1:]
	}
	return lines
}

func lineEnd(l []byte, def string) string {
	switch {
	case bytes.HasSuffix(l, []byte("\r\n")):
		return "\r\n"
	case bytes.HasSuffix(l, []byte("\n")):
		return "\n"
	}
	return def
}

// parseFstabLine returns the unescaped fields of an entry line (dump and pass
// default to "0"); ok is false for comments, blank lines and lines without a
// mount point. Fields are separated by blanks only, as libmount does.
func parseFstabLine(l []byte) (f [6]string, ok bool) {
	s := strings.TrimSuffix(strings.TrimSuffix(string(l), "\n"), "\r")
	words := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(words) < 2 || strings.HasPrefix(words[0], "#") {
		return f, false
	}
	f = [6]string{"", "", "", "", "0", "0"}
	for i, w := range words {
		if i >= len(f) {
			f[len(f)-1] += " " + w // trailing junk makes the line differ
			continue
		}
		f[i] = unescapeField(w)
	}
	return f, true
}

// sameMountPoint compares mount points as paths: "/mnt/data/" is "/mnt/data".
func sameMountPoint(a, b string) bool {
	if strings.HasPrefix(a, "/") && strings.HasPrefix(b, "/") {
		return path.Clean(a) == path.Clean(b)
	}
	return a == b
}

// escapeField writes the characters that would split or comment out a field
// as octal escapes, which libmount decodes in every field.
func escapeField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r', '\\', '#':
			b.WriteString(`\` + strconv.FormatInt(int64(c)+01000, 8)[1:])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeField decodes \NNN octal escapes; any other backslash stays.
func unescapeField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 16)
			if n <= 0xff {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
