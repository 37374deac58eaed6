package pvesim

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestDownloadURL(t *testing.T) {
	h := newHarness(t)
	h.write("etc/pve/storage.cfg", rigStorageCfg+"\ndir: isos\n\tpath /srv/isos\n\tcontent iso\n")
	img := cloudImage(t)
	sum := sha256.Sum256([]byte(img))
	good := hex.EncodeToString(sum[:])
	wrong := strings.Repeat("0", 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cloud.qcow2":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write([]byte(img))
		case "/notes.qcow2":
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("not an image\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	dl := func(storage string, args ...string) result {
		return h.step("", append([]string{"pvesh", "create", "/nodes/pve/storage/" + storage + "/download-url"}, args...)...)
	}
	r := dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import",
		"--checksum", good, "--checksum-algorithm", "sha256")
	upid := strings.TrimSpace(r.stdout[strings.LastIndex(strings.TrimSpace(r.stdout), "\n")+1:])
	h.step("", "pvesh", "get", "/nodes/pve/tasks/"+upid+"/status", "--output-format", "json")
	h.step("", "pvesh", "get", "/nodes/pve/tasks/"+upid+"/log", "--output-format", "json", "--limit", "3")
	h.file("var/log/pve/tasks/7/" + upid)
	if got := h.read("var/lib/vz/import/cloud.qcow2"); got != img {
		t.Errorf("downloaded file differs from the served one (%d bytes, want %d)", len(got), len(img))
	}
	// Again: the file is there with the right checksum.
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import",
		"--checksum", good, "--checksum-algorithm", "sha256", "--output-format", "json")
	// A wrong checksum: nothing stays under the final name, nor the temp file.
	r = dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "other.qcow2", "--content", "import",
		"--checksum", wrong, "--checksum-algorithm", "sha256")
	for _, p := range []string{"var/lib/vz/import/other.qcow2", "var/lib/vz/import/other.qcow2.tmp_dwnl.4242"} {
		if _, err := os.Stat(h.sim.path(p)); !os.IsNotExist(err) {
			t.Errorf("%s after a checksum mismatch: %v", p, err)
		}
	}
	upid = strings.TrimSpace(r.stdout[strings.LastIndex(strings.TrimSpace(r.stdout), "\n")+1:])
	h.step("", "pvesh", "get", "/nodes/pve/tasks/"+upid+"/status", "--output-format", "json")
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import",
		"--checksum", wrong, "--checksum-algorithm", "sha256")
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import")
	// The file name is normalized; .img goes as iso content.
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "../noble server.img", "--content", "iso")
	dl("local", "--url", srv.URL+"/notes.qcow2", "--filename", "notes.qcow2", "--content", "import")
	dl("local", "--url", srv.URL+"/notes.qcow2", "--filename", "notes.raw", "--content", "import")
	dl("local", "--url", srv.URL+"/gone.qcow2", "--filename", "gone.qcow2", "--content", "import")
	dl("local", "--url", "http://"+closedAddr+"/x.qcow2", "--filename", "x.qcow2", "--content", "import")
	// Refused before the task.
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "iso")
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.img", "--content", "import")
	dl("local-lvm", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import")
	dl("isos", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import")
	dl("nosuch", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import")
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "import", "--checksum", good)
	dl("local", "--url", "ftp://example.org/cloud.qcow2", "--filename", "cloud.qcow2", "--content", "images")
	dl("local", "--url", srv.URL+"/cloud.qcow2", "--filename", "c.qcow2", "--content", "import", "--compression", "gz")
	h.step("", "pvesh", "get", "/nodes/pve/tasks/UPID:nope/status")
	for _, dir := range []string{"var/lib/vz/import", "var/lib/vz/template/iso"} {
		entries, err := os.ReadDir(h.sim.path(dir))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		h.log.WriteString("=== ls " + dir + "\n" + strings.Join(names, "\n") + "\n\n")
	}
	h.golden("download_url", srv.URL, "http://mirror.test:8080", strings.TrimPrefix(srv.URL, "http://"), "mirror.test:8080",
		closedAddr, "127.0.0.1:9")
}
