package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
)

// caPath is where the node keeps the CA the VM trusts (trusted_ca_files).
const caPath = "/etc/pve/phoenix/root_ca.crt"

// ctxFeature is a feature of the test's own: it keeps what it was given
// (its argument, environment and context) and reads a parameter of its own
// from the context with jq, which base_setup installed before it.
const ctxFeature = `#!/bin/sh
set -eu
d=/var/lib/phoenix-ctx
mkdir -p "$d"
cp "$PHOENIX_CONTEXT" "$d/context.json"
printf '%s\n' "$1" "$PHOENIX_FEATURE" "$PHOENIX_VMID" "$PHOENIX_VM_NAME" "$PHOENIX_CONTEXT" >"$d/env"
jq -r .site_color "$PHOENIX_CONTEXT" >"$d/param"
date +%s%N >>"$d/runs"
`

// newCA makes a self-signed CA certificate: its PEM and its DER's sha256.
func newCA(t *testing.T, cn string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), sha256Hex(der)
}

// TestFeatures runs the built-in base_setup and trusted_ca and a script of
// the test's own on 8101, and shows from outside phoenix (docker exec) that
// each did what it says, that a second run changes nothing, that a script
// sees its context, and that a rotated CA runs trusted_ca alone again.
func TestFeatures(t *testing.T) {
	t.Parallel()
	l := newLab(t, func(vm *rig.ConfigVM) {
		vm.Features = []string{"base_setup", "trusted_ca", "ctx"}
		vm.AgentTimeoutSeconds = 300 // cloud-init's first boot on a machine other tests keep busy
	})
	// rig.ConfigVM does not know these keys: the CA files, and a key of
	// the user's own that phoenix keeps (with a warning) for scripts.
	l.patchVM(t, map[string]any{"trusted_ca_files": []string{caPath}, "site_color": "blue"})
	if err := os.WriteFile(filepath.Join(l.features, "ctx.sh"), []byte(ctxFeature), 0o755); err != nil {
		t.Fatal(err)
	}
	putCA := func(pem string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := l.rig.NodePut(ctx, caPath, []byte(pem), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ca, caSum := newCA(t, "Phoenix Rig Root "+l.rig.ID)
	putCA(ca)

	first := l.create(t)
	if first.code != 0 {
		t.Fatalf("create: exit %d", first.code)
	}
	for _, f := range []string{"base_setup", "trusted_ca", "ctx"} {
		if st := stepStatus(first, "feature "+f); st != "changed" {
			t.Errorf("feature %s: %s, want changed", f, st)
		}
	}

	// base_setup: the sysctl file, IPv6 off (the rig's Docker engine starts
	// guests with it off and /proc/sys read-only: the live switch itself
	// cannot be shown here), and the packages, installed by its apt-get.
	const sysctlConf = "# phoenix base_setup: IPv6 off, as the original project ran its guests\n" +
		"net.ipv6.conf.all.disable_ipv6 = 1\nnet.ipv6.conf.default.disable_ipv6 = 1\nnet.ipv6.conf.lo.disable_ipv6 = 1\n"
	if got := l.guest(t, "cat /etc/sysctl.d/90-phoenix-base.conf; stat -c %a /etc/sysctl.d/90-phoenix-base.conf; cat /proc/sys/net/ipv6/conf/all/disable_ipv6"); got != sysctlConf+"644\n1\n" {
		t.Errorf("base_setup's sysctl file and IPv6:\n%s", got)
	}
	pkgs := l.guest(t, "dpkg-query -W -f='${Package} ${Status}\\n' qemu-guest-agent ca-certificates curl jq")
	for _, p := range []string{"qemu-guest-agent", "ca-certificates", "curl", "jq"} {
		if !strings.Contains(pkgs, p+" install ok installed\n") {
			t.Errorf("package %s is not installed:\n%s", p, pkgs)
		}
	}
	if got := l.guest(t, "grep '^Install: ' /var/log/apt/history.log"); !strings.Contains(got, "jq:amd64") || !strings.Contains(got, "curl:amd64") {
		t.Errorf("apt's history shows no install of jq and curl (the guest image has neither):\n%s", got)
	}

	// trusted_ca: the certificate is where update-ca-certificates looks,
	// linked in /etc/ssl/certs, and OpenSSL trusts it from the system store.
	const caFile = "/usr/local/share/ca-certificates/phoenix/root_ca.crt"
	if got := l.guest(t, "cat "+caFile+"; stat -c '%a %U' "+caFile+"; readlink /etc/ssl/certs/root_ca.pem"); got != ca+"644 root\n"+caFile+"\n" {
		t.Errorf("the CA in the guest:\n%s\nwant the node's, 644 root, linked from /etc/ssl/certs/root_ca.pem", got)
	}
	if got := l.guest(t, "openssl verify "+caFile+" 2>&1; grep -c -F \""+pemLine(ca)+"\" /etc/ssl/certs/ca-certificates.crt"); got != caFile+": OK\n1\n" {
		t.Errorf("the system store does not trust the CA (openssl verify, the bundle):\n%s", got)
	}

	// The script's context: its argument and env, the VM's config with the
	// user's own key and without the password, phoenix's facts.
	if got, want := l.guest(t, "cat /var/lib/phoenix-ctx/env /var/lib/phoenix-ctx/param"),
		fmt.Sprintf("%d\nctx\n%d\nphoenix-rig-test\n/var/lib/phoenix/features/ctx.locked.json\nblue\n", vmid, vmid); got != want {
		t.Errorf("the script saw\n%s\nwant\n%s", got, want)
	}
	var seen struct {
		VMID           int      `json:"vmid"`
		Name           string   `json:"name"`
		Features       []string `json:"features"`
		TrustedCAFiles []string `json:"trusted_ca_files"`
		UserConfig     struct {
			Username string `json:"username"`
		} `json:"user_config"`
		Phoenix struct {
			Version int    `json:"context_version"`
			Feature string `json:"feature"`
			VMID    int    `json:"vmid"`
			Node    string `json:"node"`
		} `json:"phoenix"`
	}
	raw := l.guest(t, "cat /var/lib/phoenix-ctx/context.json")
	if err := json.Unmarshal([]byte(raw), &seen); err != nil || seen.VMID != vmid || seen.Name != "phoenix-rig-test" ||
		strings.Join(seen.Features, " ") != "base_setup trusted_ca ctx" || len(seen.TrustedCAFiles) != 1 || seen.UserConfig.Username != rig.GuestUser ||
		seen.Phoenix.Version != 1 || seen.Phoenix.Feature != "ctx" || seen.Phoenix.VMID != vmid || seen.Phoenix.Node == "" {
		t.Errorf("context (%v):\n%s", err, raw)
	}
	if strings.Contains(raw, password) || strings.Contains(raw, `"password"`) {
		t.Errorf("the context holds the password:\n%s", raw)
	}
	if got := l.guest(t, "stat -c %a /var/lib/phoenix/features/ctx.locked.json"); got != "600\n" {
		t.Errorf("context file mode %s, want 600", got)
	}
	var caCtx struct {
		Phoenix struct {
			TrustedCA []struct{ Source, File, SHA256, PEM string } `json:"trusted_ca"`
		} `json:"phoenix"`
	}
	raw = l.guest(t, "cat /var/lib/phoenix/features/trusted_ca.locked.json")
	if err := json.Unmarshal([]byte(raw), &caCtx); err != nil || len(caCtx.Phoenix.TrustedCA) != 1 ||
		caCtx.Phoenix.TrustedCA[0] != (struct{ Source, File, SHA256, PEM string }{caPath, "root_ca.crt", caSum, ca}) {
		t.Errorf("trusted_ca's context (%v):\n%s", err, raw)
	}

	// A second run changes nothing, in phoenix's words and in the guest.
	const state = "ls -l --time-style=+%s.%N /usr/local/share/ca-certificates/phoenix /etc/ssl/certs/root_ca.pem /etc/sysctl.d/90-phoenix-base.conf " +
		"/etc/ssl/certs/ca-certificates.crt; wc -l </var/log/apt/history.log; cat /var/lib/phoenix-ctx/runs /var/lib/phoenix/features/*.rc"
	before := l.guest(t, state)
	second := l.create(t)
	if second.code != 0 || second.summary(t).Changed != 0 {
		t.Errorf("second run: exit %d, %d changed, want 0 and 0", second.code, second.summary(t).Changed)
	}
	if after := l.guest(t, state); after != before {
		t.Errorf("the second run changed the guest:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The CA is rotated on the node: the plan says trusted_ca runs again,
	// the run runs it alone, and the old CA is trusted no more.
	rotated, _ := newCA(t, "Phoenix Rig Root 2 "+l.rig.ID)
	putCA(rotated)
	plan := l.create(t, "--dry-run", "--detailed-exitcode")
	if plan.code != 2 || stepStatus(plan, "feature trusted_ca") != "changed" || stepStatus(plan, "feature base_setup") != "ok" || stepStatus(plan, "feature ctx") != "ok" {
		t.Errorf("plan after the rotation: exit %d, want 2 with trusted_ca alone to run", plan.code)
	}
	third := l.create(t)
	if third.code != 0 || third.summary(t).Changed != 1 || stepStatus(third, "feature trusted_ca") != "changed" {
		t.Errorf("run after the rotation: exit %d, %d changed, want trusted_ca alone", third.code, third.summary(t).Changed)
	}
	l.guest(t, "printf '%s' '"+ca+"' >/tmp/old-ca.pem")
	if got := l.guest(t, "cat "+caFile+"; openssl verify "+caFile+" 2>&1; openssl verify /tmp/old-ca.pem >/dev/null 2>&1 || echo old: not trusted; "+
		"grep -c -F \""+pemLine(ca)+"\" /etc/ssl/certs/ca-certificates.crt || true; cat /var/lib/phoenix-ctx/runs | wc -l"); got != rotated+caFile+": OK\nold: not trusted\n0\n1\n" {
		t.Errorf("after the rotation:\n%s\nwant the new CA trusted, the old one not, ctx not run again", got)
	}
}

// patchVM sets members of 8101's object in the lab's config, as written.
func (l *lab) patchVM(t *testing.T, members map[string]any) {
	t.Helper()
	b, err := os.ReadFile(l.config)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, v := range doc["vms"].([]any) {
		if vm := v.(map[string]any); vm["vmid"] == float64(vmid) {
			for k, val := range members {
				vm[k] = val
			}
		}
	}
	if b, err = json.MarshalIndent(doc, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.config, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// stepStatus is the status of the step named task in r ("" if it did not run).
func stepStatus(r result, task string) string {
	for _, e := range r.ends() {
		if e.Task == task {
			return e.Status
		}
	}
	return ""
}

// pemLine is a line from the middle of a PEM certificate: unique to it.
func pemLine(p string) string {
	lines := strings.Split(strings.TrimSpace(p), "\n")
	return lines[len(lines)/2]
}
