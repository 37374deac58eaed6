package pve

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// A template's cloud image is fetched on the node, into a file storage, and
// imported from there (qm create … import-from). pve-more.md §1.1.

// imageTimeout bounds a download and its checksum: cloud images are a few
// hundred MiB, mirrors can be slow.
const imageTimeout = time.Hour

// imageParams say which image a template is built from (the playbook passes
// the same ones to vm_image and vm_create).
type imageParams struct {
	Image   string `json:"image"`    // template_image: a file name or an http(s) URL; "" when the config has none
	BaseURL string `json:"base_url"` // resolves a file name; "" for inventory.DefaultImageBaseURL
	SHA256  string `json:"sha256"`   // template_image_sha256; "" when not given
	// Storage is the file storage the image is kept in and imported from.
	Storage string `json:"storage"` // default "local"
}

// source resolves the image; nil without one.
func (p *imageParams) source() (*inventory.ImageSource, error) {
	if p.Storage == "" {
		p.Storage = "local"
	}
	p.SHA256 = strings.ToLower(p.SHA256)
	if p.SHA256 != "" && !reSHA256.MatchString(p.SHA256) {
		return nil, fmt.Errorf("parameters: sha256: %q is not 64 hexadecimal digits", p.SHA256)
	}
	if p.Image == "" {
		return nil, nil
	}
	src, err := inventory.ResolveImage(p.Image, p.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("parameters: image: %w", err)
	}
	return &src, nil
}

// storageSubdirs are where a content type lives below a file storage's
// path (PVE::Storage::Plugin get_subdir).
var storageSubdirs = map[string]string{"iso": "template/iso", "import": "import"}

// fileStorage is a Proxmox storage as /etc/pve/storage.cfg defines it;
// path is set for those that keep files (dir, nfs, cifs, …).
type fileStorage struct {
	id, typ, path string
	content       []string
	// shared: every node sees the same volumes (a clone or migration to
	// another node needs no copy); nodes limits where it is enabled.
	shared bool
	nodes  []string
}

// sharedTypes are the storage types that are always shared
// (PVE::Storage::Plugin's @SHARED_STORAGE); others are when they say
// "shared 1".
var sharedTypes = []string{"iscsi", "nfs", "cifs", "rbd", "cephfs", "iscsidirect", "glusterfs", "zfs", "drbd", "pbs"}

// enabledOn reports whether the storage is available on a node.
func (s fileStorage) enabledOn(node string) bool {
	return len(s.nodes) == 0 || slices.Contains(s.nodes, node)
}

// imagePath is where the image's file is kept on the node.
func (s fileStorage) imagePath(src *inventory.ImageSource) string {
	return path.Join(s.path, storageSubdirs[src.Content], src.File)
}

const storageCfg = "/etc/pve/storage.cfg"

// readStorages returns the storages of the node's cluster, read once per
// run.
func readStorages(ctx context.Context, env *tasks.Env) (map[string]fileStorage, error) {
	v, err := env.Cached("pve:storage.cfg", func() (any, error) {
		ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
		defer cancel()
		res, err := env.Node.Run(ctx, transport.Cmd{Line: catIfExists(storageCfg), Timeout: tasks.ProbeTimeout, Probe: true})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", storageCfg, err)
		}
		return parseStorageCfg(string(res.Stdout)), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]fileStorage), nil
}

// readStorage returns file storage id of the node.
func readStorage(ctx context.Context, env *tasks.Env, id string) (fileStorage, error) {
	all, err := readStorages(ctx, env)
	if err != nil {
		return fileStorage{}, err
	}
	s, ok := all[id]
	switch {
	case !ok:
		return fileStorage{}, fmt.Errorf("storage %q is not defined in %s", id, storageCfg)
	case s.path == "":
		return fileStorage{}, fmt.Errorf("storage %q (%s) keeps no files: images are downloaded into a file storage such as local", id, s.typ)
	}
	return s, nil
}

// catIfExists prints a file, nothing when it is missing.
func catIfExists(file string) string {
	return "test ! -e " + transport.Quote(file) + " || " + transport.Command("cat", file)
}

// parseStorageCfg reads storage.cfg's section config: "<type>: <id>"
// headers, then indented "<key> <value>" lines. Without a proper "local",
// Proxmox uses its built-in one.
func parseStorageCfg(text string) map[string]fileStorage {
	out := map[string]fileStorage{}
	var cur *fileStorage
	flush := func() {
		if cur != nil {
			out[cur.id] = *cur
		}
	}
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			typ, id, ok := strings.Cut(trimmed, ":")
			flush()
			cur = nil
			if ok {
				typ := strings.TrimSpace(typ)
				cur = &fileStorage{typ: typ, id: strings.TrimSpace(id), shared: slices.Contains(sharedTypes, typ)}
			}
			continue
		}
		key, value, _ := strings.Cut(trimmed, " ")
		if cur == nil {
			continue
		}
		switch value = strings.TrimSpace(value); key {
		case "path":
			cur.path = value
		case "content":
			cur.content = strings.Split(value, ",")
		case "shared":
			cur.shared = cur.shared || value == "1"
		case "nodes":
			cur.nodes = strings.Split(value, ",")
		}
	}
	flush()
	if l, ok := out["local"]; !ok || l.typ != "dir" {
		out["local"] = fileStorage{id: "local", typ: "dir", path: "/var/lib/vz",
			content: []string{"backup", "images", "iso", "rootdir", "snippets", "vztmpl"}}
	}
	return out
}

// imageFile is the image's file on the node as Check found it.
type imageFile struct {
	path   string
	exists bool
	sha256 string // of the file when it exists and was hashed
}

// readImageFile looks at the image's file, hashing it only when there is a
// checksum to compare with.
func readImageFile(ctx context.Context, env *tasks.Env, file string, hash bool) (imageFile, error) {
	f := imageFile{path: file}
	line := transport.Command("test", "-e", file)
	if hash {
		line = "test ! -e " + transport.Quote(file) + " || " + transport.Command("sha256sum", "--", file)
	}
	res, err := env.Node.Run(ctx, transport.Cmd{Line: line, Timeout: imageTimeout, Probe: true})
	switch {
	case !hash && transport.ExitCode(err) == 1:
		return f, nil
	case err != nil:
		return f, fmt.Errorf("look at %s on the node: %w", file, err)
	case !hash:
		f.exists = true
		return f, nil
	}
	if fields := strings.Fields(string(res.Stdout)); len(fields) > 0 {
		f.exists, f.sha256 = true, strings.ToLower(fields[0])
		if !reSHA256.MatchString(f.sha256) {
			return f, fmt.Errorf("sha256sum %s printed %q", file, transport.Tail(res.Stdout, 1))
		}
	}
	return f, nil
}

type imageTask struct {
	qm
	p   imageParams
	src *inventory.ImageSource
}

func newImage(q qm, p imageParams) (tasks.Task, error) {
	src, err := p.source()
	if err != nil {
		return nil, err
	}
	return &imageTask{qm: q, p: p, src: src}, nil
}

// Check decides first whether the template needs its image at all: a
// template that is built needs nothing more (the rest of its playbook is
// skipped), an interrupted build goes on with the VM it has.
func (t *imageTask) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	vmid := env.VM.VMID
	if t.src != nil && t.p.SHA256 == "" {
		warnOnce(env, "no image checksum", "warning: template %d: no template_image_sha256: the image from %s is not verified, and a changed image goes unnoticed", vmid, t.src.URL)
	}
	tb, err := readTemplateBuild(ctx, env, t.p.SHA256)
	if err != nil {
		return tasks.Change{}, err
	}
	if c, need, err := tb.settled(env); err != nil || !need {
		return c, err
	}
	switch {
	case t.src == nil && env.VM.CloneFromVMID != 0:
		return none("template %d is made by cloning vm %d, from no image", vmid, env.VM.CloneFromVMID), nil
	case t.src == nil:
		return tasks.Change{}, fmt.Errorf("template %d does not exist and the config gives no template_image to build it from", vmid)
	}
	st, err := readStorage(ctx, env, t.p.Storage)
	if err != nil {
		return tasks.Change{}, fmt.Errorf("template %d: %w", vmid, err)
	}
	f, err := readImageFile(ctx, env, st.imagePath(t.src), t.p.SHA256 != "")
	if err != nil {
		return tasks.Change{}, err
	}
	switch {
	case f.exists && t.p.SHA256 == "":
		return none("image %s is on the node (not verified: no template_image_sha256)", f.path), nil
	case f.exists && f.sha256 == t.p.SHA256:
		return none("image %s is on the node with sha256 %s", f.path, short(f.sha256)), nil
	}
	var calls []call
	var diff string
	will := fmt.Sprintf("will download %s to %s", t.src.URL, f.path)
	did := fmt.Sprintf("downloaded %s to %s", t.src.URL, f.path)
	if f.exists {
		// download-url never overwrites a file; neither does phoenix while
		// the new one is not verified.
		calls = append(calls, call{argv: []string{"rm", "-f", "--", f.path}, timeout: qmTimeout})
		diff = fmt.Sprintf("- %s: sha256 %s\n", f.path, f.sha256)
		will = fmt.Sprintf("will replace %s (sha256 %s, the config wants %s) with %s", f.path, short(f.sha256), short(t.p.SHA256), t.src.URL)
		did = fmt.Sprintf("replaced %s with %s", f.path, t.src.URL)
	}
	if slices.Contains(st.content, t.src.Content) {
		calls = append(calls, t.downloadURL(env, st))
		will += " (pvesh download-url)"
	} else {
		calls = append(calls, t.plainDownload(f.path))
		will += fmt.Sprintf(" (wget: storage %s is not configured for content %s)", st.id, t.src.Content)
	}
	if t.p.SHA256 != "" {
		diff += fmt.Sprintf("+ %s: sha256 %s\n", f.path, t.p.SHA256)
		will += ", verified against sha256 " + short(t.p.SHA256)
	} else {
		diff += fmt.Sprintf("+ %s\n", f.path)
		will += " (not verified: no template_image_sha256)"
	}
	return planned(tasks.Create, will, did, diff, calls...), nil
}

// downloadURL is Proxmox's own download into the storage: it verifies the
// checksum and renames the file into place only when it matches, and
// leaves a file that is there with the right checksum alone. pvesh exits 0
// when the task fails: the failure is its stderr.
func (t *imageTask) downloadURL(env *tasks.Env, st fileStorage) call {
	argv := []string{"pvesh", "create", fmt.Sprintf("/nodes/%s/storage/%s/download-url", pveNode(env), st.id),
		"--content", t.src.Content, "--filename", t.src.File, "--url", t.src.URL}
	if t.p.SHA256 != "" {
		argv = append(argv, "--checksum", t.p.SHA256, "--checksum-algorithm", "sha256")
	}
	return call{argv: argv, timeout: imageTimeout, checkStderr: true}
}

// plainDownload fetches into a temp file next to dest, checks its sha256
// and renames it into place only then; the temp file goes on any failure,
// so nothing is ever left under the image's name but a verified file.
func (t *imageTask) plainDownload(dest string) call {
	q := transport.Quote
	script := "set -eu; dest=" + q(dest) + `; tmp=$(mktemp "$dest.phoenix-XXXXXX"); ` +
		`trap 'rm -f "$tmp"' EXIT; trap 'exit 1' HUP INT TERM; ` +
		`wget -nv -O "$tmp" ` + q(t.src.URL) + "; "
	if t.p.SHA256 != "" {
		script += `got=$(sha256sum < "$tmp" | cut -d' ' -f1); ` +
			`if [ "$got" != ` + q(t.p.SHA256) + ` ]; then echo "checksum mismatch: got '$got' != expect '"` + q(t.p.SHA256) + `"'" >&2; exit 1; fi; `
	}
	script += `chmod 0644 "$tmp"; mv -f "$tmp" "$dest"`
	return call{argv: []string{"sh", "-c", script}, timeout: imageTimeout}
}

// pveNode is the node's name in API paths.
func pveNode(env *tasks.Env) string {
	if env.PVENode != "" {
		return env.PVENode
	}
	return "localhost"
}

// short is a checksum cut for a person to read.
func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12] + "…"
	}
	return sum
}
