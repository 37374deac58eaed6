package inventory

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// The rules below judge one value each and return what is wrong with it
// ("" when nothing is); the loader adds where it is. They are the one place
// these values are validated: tasks may re-check as a defense, but the
// error a user reads comes from here, with file, pointer and line:col.

// controlCharProblem refuses control characters (C0, DEL, C1): a newline
// or NUL in a value that reaches a command line, an fstab line or a
// cloud-init file splits or truncates it.
func controlCharProblem(s string) string {
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains a control character (%s) at byte %d; not allowed in a value phoenix puts on a command line or in a file", controlName(r), i)
		}
	}
	return ""
}

func controlName(r rune) string {
	switch r {
	case '\n':
		return `newline, \n`
	case '\r':
		return `carriage return, \r`
	case '\t':
		return `tab, \t`
	case 0:
		return "NUL"
	case 0x7f:
		return "DEL"
	}
	return fmt.Sprintf("U+%04X", r)
}

// pathProblem refuses a path that is not absolute or not written the one
// way path.Clean writes it: "..", ".", "//" and a trailing slash make two
// spellings of one place (duplicate checks and fstab lines compare text)
// or climb out of where the path seems to point.
func pathProblem(p, where string) string {
	if !path.IsAbs(p) {
		return fmt.Sprintf("must be an absolute path %s, not %q", where, p)
	}
	if c := path.Clean(p); c != p {
		return fmt.Sprintf("must be a clean path (no \"..\", \".\", \"//\" or trailing \"/\"): write %q, not %q", c, p)
	}
	return ""
}

// Guest directories an NFS mount must not replace. A mount hides what the
// directory held, so the rule is what the guest needs to boot, log in and
// install packages:
//   - kernel and runtime filesystems (/proc, /sys, /dev, /run, and /var/run,
//     /var/lock, which point into /run) are mounted by the kernel and
//     systemd before fstab's network mounts, and hold no data: nothing there
//     or below;
//   - /boot (kernels, initramfs, the EFI system partition at /boot/efi) and
//     the package manager's program trees (/bin, /sbin, /lib, /lib32,
//     /lib64, /libx32, /usr) hold the files the guest runs from: nothing
//     there or below, except below /usr/local, which FHS leaves to the
//     administrator;
//   - the directories themselves whose subdirectories are where
//     applications keep their own data: replacing /etc, /var, /var/lib,
//     /var/log, /var/cache, /var/spool, /var/tmp, /tmp, /usr/local breaks
//     the system, replacing /etc/x or /var/lib/app is the user's choice;
//     /home and /root hide the login users' homes, with the authorized_keys
//     cloud-init wrote there.
//
// /mnt/x, /srv/x, /opt/x, /data, /home/x and /var/lib/app are fine.
var (
	reservedTrees = []string{"/proc", "/sys", "/dev", "/run", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/var/run", "/var/lock"}
	reservedDirs  = []string{"/", "/etc", "/home", "/root", "/tmp", "/usr/local", "/var", "/var/cache", "/var/lib", "/var/log", "/var/spool", "/var/tmp"}
	// pseudoTrees hold no regular files: nothing is injected there.
	pseudoTrees = []string{"/proc", "/sys", "/dev", "/run", "/var/run", "/var/lock"}
)

// under reports whether clean path p is root or below it.
func under(p, root string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

// mountPointProblem judges a guest mount point (nfs_shares guest_path,
// legacy volumes mount_point).
func mountPointProblem(p string) string {
	if msg := pathProblem(p, "in the guest"); msg != "" {
		return msg
	}
	switch {
	case p == "/":
		return "/ is the guest's root file system: an NFS mount must not replace it; mount under /mnt, /srv or /opt instead"
	case slices.Contains(reservedDirs, p):
		return fmt.Sprintf("%s is a system directory of the guest: an NFS mount must not replace it (a directory below it is fine, e.g. %s)", p, path.Join(p, "app"))
	case strings.HasPrefix(p, "/usr/local/"):
		return ""
	}
	for _, root := range reservedTrees {
		if under(p, root) {
			return fmt.Sprintf("%s is a system directory of the guest: an NFS mount must not replace %s or anything below it; mount under /mnt, /srv or /opt instead", p, root)
		}
	}
	return ""
}

// destinationProblem judges the guest path of an injected file: a clean
// file path (no trailing slash), not a system directory, not in a kernel or
// runtime filesystem.
func destinationProblem(p string) string {
	if strings.HasSuffix(p, "/") && len(p) > 1 && path.IsAbs(p) {
		return fmt.Sprintf("must be a file path, not a directory: name the file, e.g. %q", path.Join(p, "file"))
	}
	if msg := pathProblem(p, "in the guest"); msg != "" {
		return msg
	}
	for _, root := range pseudoTrees {
		if under(p, root) {
			return fmt.Sprintf("%s is in the guest's %s, a kernel or runtime filesystem: files cannot be injected there", p, root)
		}
	}
	if slices.Contains(reservedDirs, p) || slices.Contains(reservedTrees, p) {
		return fmt.Sprintf("%s is a system directory of the guest, not a file path", p)
	}
	return ""
}

// Proxmox's own formats (pve-common PVE/JSONSchema.pm), for values qm gets.
var (
	dnsNameRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*[$]?$`)
)

// userNameProblem judges a Linux user name (useradd's portable rule, as
// the schema's userName): a value like "-oProxyCommand=x" is an option to
// any program that reads it as an argument.
func userNameProblem(u string) string {
	if len(u) > 32 || !userNameRE.MatchString(u) {
		return fmt.Sprintf("must be a Linux user name (a lower-case letter or '_', then lower-case letters, digits, '_' or '-', optionally a final '$'; at most 32 characters), not %q", u)
	}
	return ""
}

// hostProblem judges a host to connect to: a DNS name or an IP address.
func hostProblem(h string) string {
	if _, err := netip.ParseAddr(h); err == nil || dnsNameRE.MatchString(h) {
		return ""
	}
	return fmt.Sprintf("must be a host name or an IP address, not %q", h)
}

// nfsHost returns the NFS server h (a host name, an IPv4 address, or an
// IPv6 address with or without brackets) as it is written before ":" in
// an NFS device (fstab's first field): IPv6 in brackets, addresses in
// their canonical form, names as written (compare them with EqualFold).
func nfsHost(h string) (string, bool) {
	inner := h
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		inner = h[1 : len(h)-1]
		if a, err := netip.ParseAddr(inner); err == nil && a.Is6() {
			return "[" + a.String() + "]", true
		}
		return "", false
	}
	if a, err := netip.ParseAddr(inner); err == nil {
		if a.Is6() {
			return "[" + a.String() + "]", true
		}
		return a.String(), true
	}
	if dnsNameRE.MatchString(h) {
		return h, true
	}
	return "", false
}

// splitNFSSource splits "server:/path" (IPv6 as "[fd00::2]:/path") into
// its server, in nfsHost's form, and path; a plain path has no server.
func splitNFSSource(s string) (server, p, problem string) {
	if strings.HasPrefix(s, "/") {
		return "", s, ""
	}
	i := strings.Index(s, ":/")
	if i < 0 {
		return "", s, fmt.Sprintf("must be an absolute path on the NFS server or server:/path (e.g. 10.0.0.13:/export/data, [fd00::2]:/export/data), not %q", s)
	}
	server, ok := nfsHost(s[:i])
	if !ok {
		return "", s[i+1:], fmt.Sprintf("server %q before \":/\" must be a host name or an IP address (IPv6 as [fd00::2])", s[:i])
	}
	return server, s[i+1:], ""
}

// nfsOptionsProblem judges fstab mount options: commas between options, no
// white space (it would end the fstab field).
func nfsOptionsProblem(o string) string {
	for _, opt := range strings.Split(o, ",") {
		if opt == "" || strings.ContainsFunc(opt, unicode.IsSpace) {
			return fmt.Sprintf("must be mount options separated by single commas, without spaces, e.g. %q, not %q", DefaultNFSOptions, o)
		}
	}
	return ""
}

// sshKeyProblem judges one authorized_keys line. ParseAuthorizedKey is the
// judge; when it refuses, the key is taken apart to say why.
func sshKeyProblem(k string) string {
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err == nil {
		return ""
	}
	return fmt.Sprintf("is not an SSH public key (%q): %s", abbreviate(k, 24), sshKeyWhy(k))
}

func sshKeyWhy(k string) string {
	fields := strings.Fields(k)
	i := 0
	for i < len(fields) && !isKeyType(fields[i]) {
		i++
	}
	switch {
	case len(fields) == 0:
		return "it is empty"
	case i == len(fields):
		return `no key type such as ssh-ed25519, ecdsa-sha2-nistp256 or ssh-rsa; want "TYPE BASE64-KEY [comment]", one line of a .pub file`
	case i+1 == len(fields):
		return fmt.Sprintf("the key data after %s is missing", fields[i])
	}
	blob, err := base64.StdEncoding.DecodeString(fields[i+1])
	if err != nil {
		return fmt.Sprintf("the key data is not base64 (%v)", err)
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return fmt.Sprintf("the key data is not a %s key (%v): truncated or damaged in copying?", fields[i], err)
	}
	if pub.Type() != fields[i] {
		return fmt.Sprintf("the key data is a %s key, but the line says %s", pub.Type(), fields[i])
	}
	return "unreadable options before the key type"
}

// isKeyType reports whether f names an SSH public key or certificate type.
func isKeyType(f string) bool {
	f = strings.TrimSuffix(f, "-cert-v01@openssh.com")
	switch f {
	case ssh.KeyAlgoRSA, ssh.InsecureKeyAlgoDSA, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoMLDSA44, ssh.KeyAlgoMLDSA65, ssh.KeyAlgoMLDSA87:
		return true
	}
	return false
}

// abbreviate cuts s to n runes, marking the cut.
func abbreviate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
