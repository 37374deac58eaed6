package pvesim

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// pvesh create /nodes/{node}/storage/{storage}/download-url: the
// download_url handler of pve-storage and PVE::Tools::download_file_from_url
// (see pve-more.md §1.1.1). pvesim fetches with Go's HTTP client instead of
// wget; the task log has wget's request and result lines, without its
// progress dots, speeds and the "Resolving" line.

var (
	checksumAlgorithms = []string{"md5", "sha1", "sha224", "sha256", "sha384", "sha512"}
	vztmplNameRE       = regexp.MustCompile(`^[^/]+\.tar\.(?:gz|xz|zst|bz2)$`)
	uploadImportRE     = regexp.MustCompile(`^[a-zA-Z0-9\-.+=_]+\.(ova|qcow2|raw|vmdk)$`)
	unsafeFileCharRE   = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)
	httpURLRE          = regexp.MustCompile(`^https?://.*$`)
)

func downloadURLProps() []prop {
	return []prop{
		{name: "url", required: true, format: func(v string) string {
			if !httpURLRE.MatchString(v) {
				return "value does not match the regex pattern"
			}
			return ""
		}},
		{name: "content", required: true, enum: []string{"iso", "vztmpl", "import"}},
		{name: "filename", required: true, maxLen: 255},
		{name: "checksum"},
		{name: "checksum-algorithm", enum: checksumAlgorithms},
		{name: "compression", enum: []string{"gz", "lzo", "zst", "bz2"}},
		boolProp("verify-certificates"),
	}
}

// normalizeFilename is normalize_content_filename.
func normalizeFilename(name string) string {
	name = strings.TrimSuffix(name, "\n")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return unsafeFileCharRE.ReplaceAllString(name, "_")
}

func (c *call) apiDownloadURL(m []string, p *params) (any, error) {
	// The schema's "requires" of checksum and checksum-algorithm.
	for _, pair := range [][2]string{{"checksum", "checksum-algorithm"}, {"checksum-algorithm", "checksum"}} {
		if p.has(pair[0]) && !p.has(pair[1]) {
			return nil, badParam(pair[1], fmt.Sprintf("missing property - '%s' requires this property", pair[0]))
		}
	}
	st, err := c.storage(m[2])
	if err != nil {
		return nil, err
	}
	if st.path == "" {
		return nil, errorf("can't upload to storage type '%s', not a file based storage!", st.typ)
	}
	content, rawURL := p.get("content"), p.get("url")
	if !st.content[content] {
		return nil, errorf("storage '%s' is not configured for content-type '%s'", st.id, content)
	}
	filename := normalizeFilename(p.get("filename"))
	imageFormat := ""
	switch content {
	case "iso":
		if !isoNameRE.MatchString(filename) {
			return nil, badParam("filename", "wrong file extension")
		}
	case "vztmpl":
		if !vztmplNameRE.MatchString(filename) {
			return nil, badParam("filename", "wrong file extension")
		}
	case "import":
		m := uploadImportRE.FindStringSubmatch(filename)
		if m == nil {
			return nil, badParam("filename", "invalid filename or wrong extension")
		}
		imageFormat = m[1]
	}
	dir := filepath.Join(st.path, contentDirs[content])
	if err := os.MkdirAll(c.path(dir), 0o755); err != nil {
		return nil, err
	}
	d := download{call: c, dest: filepath.Join(dir, filename), url: rawURL,
		algorithm: p.get("checksum-algorithm"), checksum: p.get("checksum"), format: imageFormat}
	u := c.newUPID("download", filename)
	err = c.runTask(u, func(out io.Writer) error {
		if p.has("compression") {
			if content != "iso" {
				return fmt.Errorf("decompression not supported for %s", content)
			}
			return errors.New("pvesim: decompression is not simulated")
		}
		return d.run(out)
	})
	return u.raw, err
}

// download is one download_file_from_url.
type download struct {
	*call
	dest, url           string
	algorithm, checksum string
	format              string // import content: the extension's image format
}

func (d *download) run(out io.Writer) error {
	fmt.Fprintf(out, "downloading %s to %s\n", d.url, d.dest)
	if _, err := os.Stat(d.path(d.dest)); err == nil {
		if d.algorithm == "" {
			return fmt.Errorf("refusing to override existing file '%s'", d.dest)
		}
		fmt.Fprint(out, "calculating checksum of existing file...")
		got, err := fileHash(d.algorithm, d.path(d.dest))
		if err != nil {
			return err
		}
		if strings.EqualFold(got, d.checksum) {
			fmt.Fprintln(out, "OK, got correct file already, no need to download")
			return nil
		}
		fmt.Fprintln(out)
		return fmt.Errorf("checksum mismatch: got '%s' != expect '%s', aborting", got, d.checksum)
	}
	tmp := fmt.Sprintf("%s.tmp_dwnl.%d", d.dest, d.PID)
	err := d.fetch(out, tmp)
	if err == nil && d.algorithm != "" {
		fmt.Fprint(out, "calculating checksum...")
		var got string
		if got, err = fileHash(d.algorithm, d.path(tmp)); err == nil {
			if strings.EqualFold(got, d.checksum) {
				fmt.Fprintln(out, "OK, checksum verified")
			} else {
				fmt.Fprintln(out)
				err = fmt.Errorf("checksum mismatch: got '%s' != expect '%s'", got, d.checksum)
			}
		}
	}
	if err == nil && d.format != "" {
		if verr := checkImageFormat(d.path(tmp), tmp, d.format); verr != nil {
			err = fmt.Errorf("failed to verify file: %w", verr)
		}
	}
	if err == nil {
		err = os.Rename(d.path(tmp), d.path(d.dest))
	}
	if err != nil {
		os.Remove(d.path(tmp))
		return err
	}
	fmt.Fprintf(out, "download of '%s' to '%s' finished\n", d.url, d.dest)
	return nil
}

// fetch is `wget --progress=dot:giga -O tmp URL`; a failure is
// "download failed: <wget's last line>".
func (d *download) fetch(out io.Writer, tmp string) error {
	stamp := func() string { return d.Now().In(d.Location).Format("2006-01-02 15:04:05") }
	u, err := url.Parse(d.url)
	if err != nil || u.Host == "" {
		line := fmt.Sprintf("%s: Invalid URL %s: Scheme missing.", d.url, d.url)
		fmt.Fprintln(out, line)
		return fmt.Errorf("download failed: %s", line)
	}
	fmt.Fprintf(out, "--%s--  %s\n", stamp(), d.url)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	host := net.JoinHostPort(u.Hostname(), port)
	fmt.Fprintf(out, "Connecting to %s... ", host)
	client := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: time.Minute,
		Proxy:                 nil,
	}}
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		line := "failed: " + netErrorText(err) + "."
		fmt.Fprintln(out, line)
		return fmt.Errorf("download failed: Connecting to %s... %s", host, line)
	}
	defer resp.Body.Close()
	fmt.Fprintln(out, "connected.")
	fmt.Fprintf(out, "HTTP request sent, awaiting response... %s\n", resp.Status)
	if resp.StatusCode != http.StatusOK {
		line := fmt.Sprintf("%s ERROR %s.", stamp(), resp.Status[:3]+": "+http.StatusText(resp.StatusCode))
		fmt.Fprintln(out, line)
		return fmt.Errorf("download failed: %s", line)
	}
	length := "unspecified"
	if resp.ContentLength >= 0 {
		length = fmt.Sprint(resp.ContentLength)
	}
	fmt.Fprintf(out, "Length: %s [%s]\n", length, resp.Header.Get("Content-Type"))
	fmt.Fprintf(out, "Saving to: '%s'\n\n", tmp)
	f, err := os.OpenFile(d.path(tmp), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("download failed: %s: %s", tmp, syscallText(err))
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		line := fmt.Sprintf("%s - Read error at byte %d (%v).", stamp(), n, err)
		fmt.Fprintln(out, line)
		return fmt.Errorf("download failed: %s", line)
	}
	fmt.Fprintf(out, "%s - '%s' saved [%d/%d]\n\n", stamp(), tmp, n, n)
	return nil
}

// netErrorText is the system's text of a dial error ("Connection refused").
func netErrorText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return syscallText(op.Err)
	}
	return err.Error()
}

// fileHash is get_file_hash.
func fileHash(algorithm, path string) (string, error) {
	var h hash.Hash
	switch algorithm {
	case "md5":
		h = md5.New()
	case "sha1":
		h = sha1.New()
	case "sha224":
		h = sha256.New224()
	case "sha256":
		h = sha256.New()
	case "sha384":
		h = sha512.New384()
	case "sha512":
		h = sha512.New()
	default:
		return "", fmt.Errorf("unknown checksum algorithm '%s'", algorithm)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
