package transport

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"path"
)

// Attrs are what an upload sets on the new file before it takes the
// destination's name, so the file is never visible with other ones.
type Attrs struct {
	// Mode is the file's permission bits (setuid, setgid and sticky too).
	Mode fs.FileMode
	// Owner is "user", "user:group" or numeric ids, as chown(1) takes them;
	// "" leaves the uploading user (root).
	Owner string
}

// Upload is one file upload made through shell commands that run as root
// (the agent, sudo). Root works in a directory another user may own, and
// that user could plant a symlink at any name root then opens, or swap one
// in between two commands. So the upload works inside a private directory it
// creates next to the destination: mkdir of a new random name never follows
// a symlink, the directory is root's with mode 0700, so nobody else can add,
// remove or swap a name in it, and each later command re-enters it only
// after checking its device and inode. The file gets its mode and owner in
// there and is renamed over the destination: a symlink at the destination
// is replaced, its target never touched.
type Upload struct {
	dest string
	dir  string // <dest's directory>/.phoenix-<16 hex digits>
}

// uploadFile is the file's name inside the private directory.
const uploadFile = "f"

// NewUpload prepares an upload to dest; random supplies the directory's
// name (nil: crypto/rand).
func NewUpload(dest string, random io.Reader) (Upload, error) {
	name, err := randomName(random)
	if err != nil {
		return Upload{}, fmt.Errorf("upload %s: %w", dest, err)
	}
	return Upload{dest: dest, dir: path.Join(path.Dir(dest), name)}, nil
}

// TempName is a fresh name next to dest for a temp file that is created
// exclusively (O_EXCL) by a transport that can (SFTP, this machine).
func TempName(dest string, random io.Reader) (string, error) {
	name, err := randomName(random)
	if err != nil {
		return "", err
	}
	return path.Join(path.Dir(dest), "."+path.Base(dest)+name), nil
}

// randomName is ".phoenix-" and 64 random bits: nobody can plant a file
// under it in advance.
func randomName(random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	var b [8]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("random name: %w", err)
	}
	return ".phoenix-" + hex.EncodeToString(b[:]), nil
}

// Dir is the private directory the upload works in.
func (u Upload) Dir() string { return u.dir }

// Begin is the first command of an upload made in several: it creates the
// private directory, prints its identity (the id Append, Commit and Abort
// take) and writes stdin into the file.
func (u Upload) Begin() string {
	return "umask 077; mkdir -- " + Quote(u.dir) + " && cd -P -- " + Quote(u.dir) +
		" && stat -c %d:%i . && cat > " + uploadFile
}

// Append re-enters the directory Begin made (id is what Begin printed) and
// appends stdin to the file.
func (u Upload) Append(id string) string {
	return u.enter(id) + " && cat >> " + uploadFile
}

// Commit re-enters the directory and finishes the upload: the file's sha256
// must be sum, it gets a's owner and mode, it is renamed over the
// destination and the directory is removed. On any failure the destination
// is left as it was and the directory is removed.
func (u Upload) Commit(id, sum string, a Attrs) string {
	return u.enter(id) + " || exit 1; " + u.cleanup() + u.finish(sum, a)
}

// Once is a whole upload in one command: content on stdin, sum its sha256.
func (u Upload) Once(sum string, a Attrs) string {
	return "umask 077; mkdir -- " + Quote(u.dir) + " && cd -P -- " + Quote(u.dir) + " || exit 1; " +
		u.cleanup() + "cat > " + uploadFile + " || x; " + u.finish(sum, a)
}

// Abort removes what an unfinished upload wrote; id may be "" when Begin's
// output was lost, and then only a directory root owns is entered (nobody
// else can make one).
func (u Upload) Abort(id string) string {
	return u.enter(id) + " && rm -f " + uploadFile + " && cd .. && rmdir -- " + Quote(path.Base(u.dir))
}

func (u Upload) enter(id string) string {
	check := `[ "$(stat -c %d:%i .)" = ` + Quote(id) + ` ]`
	if id == "" {
		check = "[ -O . ]"
	}
	return "cd -P -- " + Quote(u.dir) + " && { " + check + " || { printf '%s: not the directory this upload made\\n' " +
		Quote(u.dir) + " >&2; exit 1; }; }"
}

// cleanup defines x, run inside the private directory on a failure: it
// removes the directory and what is in it, and fails the command.
func (u Upload) cleanup() string {
	return "x() { rm -f " + uploadFile + "; cd .. && rmdir -- " + Quote(path.Base(u.dir)) + "; exit 1; }; "
}

// finish runs inside the private directory, after cleanup.
func (u Upload) finish(sum string, a Attrs) string {
	attrs := Command("chmod", OctalMode(a.Mode), uploadFile)
	if a.Owner != "" {
		// chown first: it clears the setuid and setgid bits.
		attrs = Command("chown", "--", a.Owner, uploadFile) + " && " + attrs
	}
	return "h=$(sha256sum < " + uploadFile + ") && [ \"${h%% *}\" = " + Quote(sum) + " ] || " +
		"{ printf 'sha256 of the data written for %s is %s, want %s\\n' " + Quote(u.dest) + " \"${h%% *}\" " + Quote(sum) + " >&2; x; }; " +
		attrs + " && mv -fT -- " + uploadFile + " " + Quote("../"+path.Base(u.dest)) + " || x; " +
		"cd .. && rmdir -- " + Quote(path.Base(u.dir))
}

// OctalMode is m's permission bits with setuid, setgid and sticky, as
// chmod(1) reads them: "0644", "4755".
func OctalMode(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

// ModeFromOctal is the fs.FileMode of a chmod-style octal value (0o4755
// sets fs.ModeSetuid), the inverse of OctalMode.
func ModeFromOctal(v uint32) fs.FileMode {
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}
