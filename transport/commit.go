package transport

import (
	"fmt"
	"io/fs"
	"path"
)

// CommitTemp is the temp file an upload made through commands writes before
// CommitScript renames it over p: in p's directory, so the rename stays on
// one file system.
func CommitTemp(p string) string {
	dir, base := path.Split(p)
	return dir + "." + base + ".phoenix-tmp"
}

// CommitScript is the shell line that ends an atomic upload made through
// commands (the agent, sudo): it checks that tmp's sha256 is sum, sets its
// mode and renames it over path; on any failure tmp is removed and path is
// left as it was.
func CommitScript(tmp, path, sum string, mode fs.FileMode) string {
	t := Quote(tmp)
	return fmt.Sprintf(`h=$(sha256sum < %s) && [ "${h%%%% *}" = %s ] || `+
		`{ printf 'sha256 of %%s is %%s, want %%s\n' %s "${h%%%% *}" %s >&2; rm -f %s; exit 1; }; `+
		`chmod %04o %s && mv -f %s %s || { rm -f %s; exit 1; }`,
		t, Quote(sum), t, Quote(sum), t, mode.Perm(), t, t, Quote(path), t)
}
