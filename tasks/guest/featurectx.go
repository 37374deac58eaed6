package guest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// contextVersion is the version of the feature context's layout (the
// "phoenix" object); it grows when a field changes meaning.
const contextVersion = 1

// maxCAFile bounds one trusted_ca_files entry read from the node: a CA
// bundle is kilobytes.
const maxCAFile = 1 << 20

// featureContext is the JSON a feature script reads at $PHOENIX_CONTEXT,
// as the original's vm_context.json: the VM's object from the config,
// resolved (vm_defaults merged in, keys phoenix does not know kept as
// written, secrets left out), plus phoenix's own facts under "phoenix".
type featureContext struct {
	Version int    `json:"context_version"`
	Feature string `json:"feature"`
	VMID    int    `json:"vmid"`
	Node    string `json:"node,omitempty"` // the inventory node the VM lives on
	// TrustedCA are trusted_ca_files' certificates, one per entry, for the
	// trusted_ca feature only.
	TrustedCA []caCert `json:"trusted_ca,omitempty"`
}

// caCert is one certificate of a trusted_ca_files entry, checked and
// re-encoded (a file's other PEM blocks and text are dropped).
type caCert struct {
	Source  string `json:"source"`  // the file on the node
	File    string `json:"file"`    // its name in the guest: NAME.crt, NAME-2.crt for a bundle's second
	Subject string `json:"subject"` // for people reading logs
	SHA256  string `json:"sha256"`  // of the DER certificate: its fingerprint
	PEM     string `json:"pem"`
}

// buildContext is the context of feature name for env's VM.
func buildContext(env *tasks.Env, name string, certs []caCert) ([]byte, error) {
	vm := *env.VM
	vm.UserConfig.Password = "" // omitted: a secret never reaches a guest file
	b, err := json.Marshal(&vm)
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	for k, v := range vm.Extra {
		if _, known := doc[k]; !known {
			doc[k] = v
		}
	}
	if doc["phoenix"], err = json.Marshal(featureContext{Version: contextVersion, Feature: name, VMID: vm.VMID, Node: env.NodeName, TrustedCA: certs}); err != nil {
		return nil, err
	}
	// Keys sorted (a map): the same config gives the same bytes.
	out, err := json.MarshalIndent(doc, "", "  ")
	return append(out, '\n'), err
}

// trustedCA reads trusted_ca_files from the node the VM lives on, all at
// once, and checks that each holds certificates and nothing secret.
func trustedCA(ctx context.Context, env *tasks.Env) ([]caCert, error) {
	files := env.VM.TrustedCAFiles
	if len(files) == 0 {
		return nil, errors.New(env.VM.FeatureNeeds(inventory.TrustedCAFeature))
	}
	lines := make([]string, len(files))
	for i, f := range files {
		lines[i] = transport.Command("head", "-c", strconv.Itoa(maxCAFile+1), "--", f)
	}
	ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	res, err := transport.BatchParallel(ctx, env.Node, lines)
	if err != nil {
		return nil, fmt.Errorf("read trusted_ca_files on the node: %w", err)
	}
	var certs []caCert
	for i, f := range files {
		switch {
		case res[i].ExitCode != 0:
			return nil, fmt.Errorf("trusted_ca_files: %s on the node: %s", f, transport.Tail(res[i].Stderr, 2))
		case len(res[i].Stdout) > maxCAFile:
			return nil, fmt.Errorf("trusted_ca_files: %s on the node: larger than %d KiB, not a CA certificate file", f, maxCAFile>>10)
		}
		c, err := parseCACerts(f, res[i].Stdout)
		if err != nil {
			return nil, fmt.Errorf("trusted_ca_files: %s on the node: %w", f, err)
		}
		certs = append(certs, c...)
	}
	seen := map[string]string{}
	for _, c := range certs {
		if other, dup := seen[c.File]; dup && other != c.Source {
			return nil, fmt.Errorf("trusted_ca_files: %s and %s would both be %s in the guest: rename one", other, c.Source, c.File)
		}
		seen[c.File] = c.Source
	}
	return certs, nil
}

// parseCACerts takes the certificates of a PEM file. A private key in it is
// refused: it must never be copied into guests.
func parseCACerts(src string, b []byte) ([]caCert, error) {
	var certs []caCert
	for rest := b; ; {
		blk, r := pem.Decode(rest)
		if blk == nil {
			break
		}
		rest = r
		switch {
		case strings.Contains(blk.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("holds a private key (%s): refusing to copy it into guests", blk.Type)
		case blk.Type != "CERTIFICATE":
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, caCert{Source: src, Subject: c.Subject.String(), SHA256: sha256Hex(blk.Bytes),
			PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes}))})
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in it (-----BEGIN CERTIFICATE-----)")
	}
	// update-ca-certificates hashes a file of one certificate only.
	name := inventory.CAFileName(src)
	for i := range certs {
		certs[i].File = name
		if i > 0 {
			certs[i].File = strings.TrimSuffix(name, ".crt") + "-" + strconv.Itoa(i+1) + ".crt"
		}
	}
	return certs, nil
}
