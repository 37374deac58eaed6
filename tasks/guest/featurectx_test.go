package guest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// testCA is a self-signed CA certificate: its PEM and its DER's sha256.
func testCA(t *testing.T, cn string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), hex.EncodeToString(s[:])
}

const (
	caRoot   = "/etc/pve/phoenix/root_ca.crt"
	caBundle = "/root/ca/issuing.pem"
	caScript = "#!/bin/sh\nupdate-ca-certificates\n"
)

func caRead(files ...string) []string {
	lines := make([]string, len(files))
	for i, f := range files {
		lines[i] = "head -c 1048577 -- " + f
	}
	return lines
}

// trusted_ca is given trusted_ca_files' certificates, read from the node
// in one round trip, in its context; its version covers them, so a changed
// certificate runs it again and the rest of the config does not.
func TestFeatureTrustedCA(t *testing.T) {
	root, rootSum := testCA(t, "Phoenix Root")
	issuing, issuingSum := testCA(t, "Phoenix Issuing")
	other, otherSum := testCA(t, "Other")
	// A file as people keep them: text around the block; a bundle of two.
	rootFile := "Phoenix Root\n" + root + "\n"
	bundleFile := issuing + other

	version := func(certs ...string) string {
		h := sha256.New()
		fmt.Fprintf(h, "script %s\n", sum(caScript))
		for _, c := range certs {
			fmt.Fprintf(h, "certificate %s\n", c)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	want := version("root_ca.crt "+rootSum, "issuing.crt "+issuingSum, "issuing-2.crt "+otherSum)

	never := exit(1, "", "cat: /var/lib/phoenix/features/trusted_ca.sha256: No such file or directory\n")
	tests := []struct {
		name    string
		marker  transport.Result
		action  tasks.Action
		summary string
	}{
		{"never applied", never, tasks.Run, "will run feature trusted_ca: never applied"},
		{"applied", exit(0, want+"\n", ""), tasks.None, "feature trusted_ca already applied (sha256 " + want[:12] + ")"},
		{"a certificate changed", exit(0, version("root_ca.crt "+rootSum)+"\n", ""), tasks.Run,
			"will run feature trusted_ca: script or certificates changed since the last success (sha256 " + version("root_ca.crt " + rootSum)[:12] + " → " + want[:12] + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.features["trusted_ca"] = caScript
			w.env.VM.Name, w.env.NodeName = "web01", "pve1"
			w.env.VM.Features = []string{"trusted_ca"}
			w.env.VM.TrustedCAFiles = []string{caRoot, caBundle}
			w.env.VM.UserConfig = inventory.UserConfig{Username: "phoenix", Password: "hunter22"}
			task := w.task("feature", map[string]any{"name": "trusted_ca"})
			w.probes(task, tt.marker)
			w.node.Expect(fake.BatchParallel(caRead(caRoot, caBundle), exit(0, rootFile, ""), exit(0, bundleFile, "")))
			c := w.check(task)
			if c.Action != tt.action || c.Summary != tt.summary {
				t.Fatalf("got %s %q\nwant %s %q", c.Action, c.Summary, tt.action, tt.summary)
			}
			if c.Action == tasks.None {
				return
			}
			p := c.Plan.(*featurePlan)
			if p.sum != want || p.scriptSum != sum(caScript) || p.contextSum != sum(string(p.context)) {
				t.Errorf("version %s, script %s, context %s", p.sum, p.scriptSum, p.contextSum)
			}
			var ctx struct {
				VMID           int      `json:"vmid"`
				Name           string   `json:"name"`
				TrustedCAFiles []string `json:"trusted_ca_files"`
				UserConfig     struct {
					Username string  `json:"username"`
					Password *string `json:"password"`
				} `json:"user_config"`
				Phoenix featureContext `json:"phoenix"`
			}
			if err := json.Unmarshal(p.context, &ctx); err != nil {
				t.Fatal(err)
			}
			wantCerts := []caCert{
				{Source: caRoot, File: "root_ca.crt", Subject: "CN=Phoenix Root", SHA256: rootSum, PEM: root},
				{Source: caBundle, File: "issuing.crt", Subject: "CN=Phoenix Issuing", SHA256: issuingSum, PEM: issuing},
				{Source: caBundle, File: "issuing-2.crt", Subject: "CN=Other", SHA256: otherSum, PEM: other},
			}
			if ctx.VMID != 8101 || ctx.Name != "web01" || len(ctx.TrustedCAFiles) != 2 || ctx.UserConfig.Username != "phoenix" ||
				ctx.Phoenix.Feature != "trusted_ca" || ctx.Phoenix.Node != "pve1" || ctx.Phoenix.VMID != 8101 || ctx.Phoenix.Version != 1 ||
				fmt.Sprint(ctx.Phoenix.TrustedCA) != fmt.Sprint(wantCerts) {
				t.Errorf("context:\n%s", p.context)
			}
			if ctx.UserConfig.Password != nil || strings.Contains(string(p.context), "hunter22") {
				t.Errorf("the context holds the password:\n%s", p.context)
			}
		})
	}
}

// A feature whose certificates cannot be had fails the plan, even before
// the VM exists, saying which file and why.
func TestFeatureTrustedCAProblems(t *testing.T) {
	root, _ := testCA(t, "Root")
	key := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----\n"
	tests := []struct {
		name  string
		files []string
		read  []transport.Result // nil: nothing is read
		err   string
	}{
		{"no files", nil, nil, "feature trusted_ca needs trusted_ca_files: the CA certificate files (PEM) on the node to trust"},
		{"missing on the node", []string{caRoot},
			[]transport.Result{exit(1, "", "head: cannot open '/etc/pve/phoenix/root_ca.crt' for reading: No such file or directory\n")},
			"trusted_ca_files: /etc/pve/phoenix/root_ca.crt on the node: head: cannot open '/etc/pve/phoenix/root_ca.crt' for reading: No such file or directory"},
		{"a key with it", []string{caRoot}, []transport.Result{exit(0, root+key, "")},
			"trusted_ca_files: /etc/pve/phoenix/root_ca.crt on the node: holds a private key (EC PRIVATE KEY): refusing to copy it into guests"},
		{"not PEM", []string{caRoot, caBundle}, []transport.Result{exit(0, root, ""), exit(0, "MIIBkTCB+wIJAK…\n", "")},
			"trusted_ca_files: /root/ca/issuing.pem on the node: no PEM certificate in it (-----BEGIN CERTIFICATE-----)"},
		{"broken certificate", []string{caRoot}, []transport.Result{exit(0, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "")},
			"trusted_ca_files: /etc/pve/phoenix/root_ca.crt on the node: certificate 1: x509: malformed certificate"},
		{"too large", []string{caRoot}, []transport.Result{exit(0, strings.Repeat("x", maxCAFile+1), "")},
			"trusted_ca_files: /etc/pve/phoenix/root_ca.crt on the node: larger than 1024 KiB, not a CA certificate file"},
		{"two files, one name", []string{"/a/issuing.crt", caBundle}, []transport.Result{exit(0, root, ""), exit(0, root+root, "")},
			"trusted_ca_files: /a/issuing.crt and /root/ca/issuing.pem would both be issuing.crt in the guest: rename one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.features["trusted_ca"] = caScript
			w.env.VM.TrustedCAFiles = tt.files
			w.status = "" // the VM does not exist yet
			if tt.read != nil {
				w.node.Expect(fake.BatchParallel(caRead(tt.files...), tt.read...))
			}
			_, err := w.task("feature", map[string]any{"name": "trusted_ca"}).Check(context.Background(), w.env)
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("error %v\nwant %s…", err, tt.err)
			}
		})
	}
}

// The context is the VM's config as written, resolved: keys phoenix does
// not know are kept (a script's own parameters), the password is not.
func TestBuildContext(t *testing.T) {
	vm := &inventory.VM{VMID: 8101, Name: "web01", Features: []string{"docker"}, MemoryMB: 2048,
		UserConfig: inventory.UserConfig{Username: "phoenix", Password: "hunter22"},
		Extra:      map[string]json.RawMessage{"docker_registry_mirror": json.RawMessage(`"http://10.0.0.5:5000"`), "name": json.RawMessage(`"shadow"`)}}
	b, err := buildContext(&tasks.Env{VM: vm, NodeName: "pve2"}, "docker", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "agent_timeout_seconds": 0,
  "docker_registry_mirror": "http://10.0.0.5:5000",
  "features": [
    "docker"
  ],
  "final_snapshot": "",
  "guest_ssh": {},
  "memory_mb": 2048,
  "name": "web01",
  "network_config": {},
  "phoenix": {
    "context_version": 1,
    "feature": "docker",
    "vmid": 8101,
    "node": "pve2"
  },
  "snapshots": {},
  "user_config": {
    "username": "phoenix"
  },
  "vmid": 8101
}
`
	if string(b) != want {
		t.Errorf("context:\n%s\nwant:\n%s", b, want)
	}
	if vm.UserConfig.Password != "hunter22" {
		t.Error("building the context changed the VM")
	}
}
