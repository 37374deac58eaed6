package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Defaults of the fields phoenix adds to the original format.
const (
	DefaultNFSOptions          = "defaults,auto,nofail"
	DefaultAgentTimeoutSeconds = 300
	DefaultFinalSnapshot       = "final-form"
)

// LoadConfig reads, schema-validates and checks phoenix_vm_configs.json.
// Problems come back together as a *ConfigError naming the file, the JSON
// pointer and line:column of each; unknown keys are only warnings.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	val, err := newValidator()
	if err != nil {
		return nil, err
	}
	return parseConfig(val, path, data)
}

// parseConfig is LoadConfig on data read from file, validated by val (its
// compiled schema is most of a load's cost, so the fuzz target keeps one).
func parseConfig(val *validator, file string, data []byte) (*Config, error) {
	data = blankBOM(data)
	// Unmarshal validates the whole input first, so its SyntaxError offset
	// is where the text stops being JSON.
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, syntaxProblem(file, data, err)
	}
	pos, err := scanPositions(data)
	if err != nil {
		return nil, syntaxProblem(file, data, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, syntaxProblem(file, data, err)
	}
	l := &loader{file: file, dir: filepath.Dir(file), pos: pos, seen: map[string]bool{}}
	for _, p := range val.validate(inst) {
		l.problem(p.Pointer, "%s", p.Message)
	}
	l.schemaProblems = len(l.problems)

	cfg, srcs := l.decode(data, inst)
	l.check(cfg, srcs)
	for _, dup := range pos.dupKeys {
		line, col := pos.lineCol(dup.first)
		l.problemAt(dup.ptr, dup.at, "duplicate key %q, first at %d:%d: a key may appear once (JSON readers disagree on which value counts)", lastToken(dup.ptr), line, col)
	}
	cfg.Warnings = l.sortedWarnings()
	if len(l.problems) > 0 {
		return nil, &ConfigError{File: file, Problems: sortProblems(l.problems)}
	}
	return cfg, nil
}

// blankBOM turns a UTF-8 byte order mark into spaces: encoding/json refuses
// it, and blanking keeps every offset (and so line:column) as in the file.
func blankBOM(data []byte) []byte {
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		data = append([]byte("   "), data[3:]...)
	}
	return data
}

func syntaxProblem(file string, data []byte, err error) error {
	p := Problem{Message: "invalid JSON: " + err.Error()}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset is just past the offending byte.
		p.Line, p.Column = (&positions{lineStarts: lineStarts(data)}).lineCol(max(int(se.Offset)-1, 0))
	}
	return &ConfigError{File: file, Problems: []Problem{p}}
}

// loader collects problems and warnings while a config is decoded and
// checked.
type loader struct {
	file     string
	dir      string // relative local paths in the config resolve here
	pos      *positions
	problems []Problem
	warnings []Warning
	seen     map[string]bool // pointers with a problem: one problem each
	// schemaProblems is how many of problems came from the schema.
	schemaProblems int
}

func (l *loader) problem(ptr, format string, args ...any) {
	if l.seen[ptr] {
		return
	}
	l.seen[ptr] = true
	line, col := l.pos.at(ptr)
	l.problems = append(l.problems, Problem{Pointer: ptr, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// position is where ptr's value is in the file.
func (l *loader) position(ptr string) position {
	line, col := l.pos.at(ptr)
	return position{ptr: ptr, line: line, col: col}
}

// problemAt reports a problem at a byte offset rather than at the value
// ptr names (a repeated key), besides any other problem at ptr.
func (l *loader) problemAt(ptr string, off int, format string, args ...any) {
	line, col := l.pos.lineCol(off)
	l.problems = append(l.problems, Problem{Pointer: ptr, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// problemIf reports msg at ptr unless it is empty (a rule found nothing).
func (l *loader) problemIf(ptr, msg string) {
	if msg != "" {
		l.problem(ptr, "%s", msg)
	}
}

func (l *loader) warn(ptr, format string, args ...any) {
	line, col := l.pos.at(ptr)
	l.warnings = append(l.warnings, Warning{File: l.file, Pointer: ptr, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// warnKey points the warning at the member's key rather than its value.
func (l *loader) warnKey(ptr, format string, args ...any) {
	line, col := l.pos.keyAt(ptr)
	l.warnings = append(l.warnings, Warning{File: l.file, Pointer: ptr, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// schemaProblemUnder reports whether the schema already complained about
// ptr or something inside it.
func (l *loader) schemaProblemUnder(ptr string) bool {
	for _, p := range l.problems[:l.schemaProblems] {
		if p.Pointer == ptr || strings.HasPrefix(p.Pointer, ptr+"/") {
			return true
		}
	}
	return false
}

// unmarshal decodes raw into dst. A failure the schema has not already
// reported (an integer written as 1.0, an int overflow) becomes a problem.
func (l *loader) unmarshal(ptr string, raw []byte, dst any) {
	err := json.Unmarshal(raw, dst)
	if err == nil || l.schemaProblemUnder(ptr) {
		return
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		// Field is a dotted path of JSON names, through decodeVM's embedding.
		at := ptr
		for _, name := range strings.Split(te.Field, ".") {
			if name != reflect.TypeFor[vmFields]().Name() {
				at += "/" + escapePointer(name)
			}
		}
		l.problem(at, "cannot be read as %s: %s", te.Type, te.Value)
		return
	}
	l.problem(ptr, "%v", err)
}

// sortProblems puts problems in file order.
func sortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return ps
}

func (l *loader) sortedWarnings() []Warning {
	sort.SliceStable(l.warnings, func(i, j int) bool {
		a, b := l.warnings[i], l.warnings[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return l.warnings
}

// vmSource is a decoded VM with where its parts came from, for the checks.
type vmSource struct {
	vm  *VM
	ptr string // /vms/N
	// mounts are where each of vm.NFSShares came from (legacy volumes
	// included), in the same order.
	mounts []mountAt
	// caFiles is where vm.TrustedCAFiles came from: the VM's own list or
	// vm_defaults'.
	caFiles string
}

// mountAt holds the pointers of one NFS mount's fields.
type mountAt struct {
	export, mountPoint, options, server string
	volume                              bool // a legacy volume: no options, a path without server
}

// nfsServer settles the server of a share: an explicit server is checked
// and written in nfsHost's form; a share's host_path may name the server
// too ("server:/path", not a legacy volume's path), which then must agree
// with the explicit one. HostPath keeps the path alone.
func (l *loader) nfsServer(s *NFSShare, m mountAt) {
	if s.Server != "" {
		h, ok := nfsHost(s.Server)
		if !ok {
			l.problem(m.server, "must be a host name or an IP address, not %q", s.Server)
			return
		}
		s.Server = h
	}
	if m.volume {
		return
	}
	server, p, msg := splitNFSSource(s.HostPath)
	if msg != "" {
		l.problem(m.export, "%s", msg)
		return
	}
	s.HostPath = p
	switch {
	case server == "":
	case s.Server == "":
		s.Server = server
	case !strings.EqualFold(s.Server, server):
		line, col := l.pos.at(m.export)
		l.problem(m.server, "%s disagrees with server %s in host_path (%s at %d:%d); name the server once", s.Server, server, m.export, line, col)
	}
}

// configShape is the file's shape, for walkKnown.
type configShape struct {
	Defaults VMDefaults `json:"vm_defaults"`
	VMs      []VM       `json:"vms"`
}

func (l *loader) decode(data []byte, inst any) (*Config, []*vmSource) {
	cfg := &Config{File: l.file}
	top, ok := inst.(map[string]any)
	if !ok {
		return cfg, nil // the schema said so
	}
	var members map[string]json.RawMessage
	l.unmarshal("", data, &members)
	for key, raw := range members {
		if key != "vm_defaults" && key != "vms" {
			if cfg.Extra == nil {
				cfg.Extra = map[string]json.RawMessage{}
			}
			cfg.Extra[key] = raw
		}
	}
	l.walkKnown(inst, reflect.TypeFor[configShape](), "")

	if raw, ok := members["vm_defaults"]; ok {
		l.unmarshal("/vm_defaults", raw, &cfg.Defaults)
		cfg.Defaults.nodeAt = l.position("/vm_defaults/node")
	}
	var vms []json.RawMessage
	if raw, ok := members["vms"]; ok {
		l.unmarshal("/vms", raw, &vms)
	}
	generic, _ := top["vms"].([]any)
	var srcs []*vmSource
	for i, raw := range vms {
		if i >= len(generic) {
			break
		}
		if _, isObject := generic[i].(map[string]any); !isObject {
			continue // reported by the schema
		}
		src := l.decodeVM(pointer("vms", strconv.Itoa(i)), raw, cfg.Defaults)
		cfg.VMs = append(cfg.VMs, src.vm)
		srcs = append(srcs, src)
	}
	return cfg, srcs
}

// vmFields is VM without methods, so decodeVM can shadow some of its fields.
type vmFields VM

func (l *loader) decodeVM(ptr string, raw []byte, d VMDefaults) *vmSource {
	vm := &VM{}
	aux := struct {
		*vmFields
		AgentTimeoutSeconds *int            `json:"agent_timeout_seconds"`
		FinalSnapshot       json.RawMessage `json:"final_snapshot"`
		// Numbers or numeric strings; the original writes strings.
		Dependencies []json.Number `json:"dependencies"`
	}{vmFields: (*vmFields)(vm)}
	l.unmarshal(ptr, raw, &aux)

	vm.AgentTimeoutSeconds = DefaultAgentTimeoutSeconds
	if aux.AgentTimeoutSeconds != nil {
		vm.AgentTimeoutSeconds = *aux.AgentTimeoutSeconds
	}
	vm.FinalSnapshot = DefaultFinalSnapshot
	if aux.FinalSnapshot != nil {
		var s any
		_ = json.Unmarshal(aux.FinalSnapshot, &s)
		switch s := s.(type) {
		case string:
			vm.FinalSnapshot = s
		case bool:
			if !s {
				vm.FinalSnapshot = ""
			}
		}
	}
	for _, n := range aux.Dependencies {
		vm.Dependencies = append(vm.Dependencies, n.String())
	}

	var members map[string]json.RawMessage
	_ = json.Unmarshal(raw, &members)
	known := jsonFields(reflect.TypeFor[VM]())
	for key, val := range members {
		if _, ok := known[key]; !ok {
			if vm.Extra == nil {
				vm.Extra = map[string]json.RawMessage{}
			}
			vm.Extra[key] = val
		}
	}

	// The original merged only cores and memory_mb; the schema meant all
	// five to be defaults, and phoenix honours them.
	if vm.Cores == 0 {
		vm.Cores = d.Cores
	}
	if vm.MemoryMB == 0 {
		vm.MemoryMB = d.MemoryMB
	}
	if vm.DiskSizeGB == 0 {
		vm.DiskSizeGB = d.DiskSizeGB
	}
	if vm.StoragePool == "" {
		vm.StoragePool = d.StoragePool
	}
	if vm.NetworkBridge == "" {
		vm.NetworkBridge = d.NetworkBridge
	}
	if vm.TemplateImageBaseURL == "" {
		vm.TemplateImageBaseURL = d.TemplateImageBaseURL
	}

	src := &vmSource{vm: vm, ptr: ptr, caFiles: ptr + "/trusted_ca_files"}
	if vm.TrustedCAFiles == nil && d.TrustedCAFiles != nil {
		vm.TrustedCAFiles, src.caFiles = slices.Clone(d.TrustedCAFiles), "/vm_defaults/trusted_ca_files"
	}

	vm.nodeAt = l.position(ptr + "/node")
	for i := range vm.Features {
		vm.featuresAt = append(vm.featuresAt, l.position(ptr+"/features/"+strconv.Itoa(i)))
	}
	for i := range vm.NFSShares {
		s := &vm.NFSShares[i]
		if s.Options == "" {
			s.Options = DefaultNFSOptions
		}
		at := ptr + "/nfs_shares/" + strconv.Itoa(i)
		m := mountAt{export: at + "/host_path", mountPoint: at + "/guest_path", options: at + "/options", server: at + "/server"}
		l.nfsServer(s, m)
		src.mounts = append(src.mounts, m)
	}
	for i, v := range vm.Volumes {
		at := ptr + "/volumes/" + strconv.Itoa(i)
		if v.Type != "nfs" {
			l.warn(at+"/type", "volume type %q is ignored: phoenix mounts only nfs volumes", v.Type)
			continue
		}
		s := NFSShare{Server: v.Server, HostPath: v.Path, GuestPath: v.MountPoint, Options: DefaultNFSOptions}
		m := mountAt{export: at + "/path", mountPoint: at + "/mount_point", server: at + "/server", volume: true}
		l.nfsServer(&s, m)
		vm.NFSShares = append(vm.NFSShares, s)
		src.mounts = append(src.mounts, m)
	}
	if id := vm.GuestSSH.IdentityFile; id != "" {
		p, err := localPath(id, l.dir)
		if err != nil {
			l.problem(ptr+"/guest_ssh/identity_file", "%v", err)
		}
		vm.GuestSSH.IdentityFile = p
	}
	return src
}

// walkKnown walks v along t, the Go type phoenix reads it into: it warns
// about every object member t does not declare (keys directly on the top
// level or on a VM are kept in Extra) and refuses control characters in
// every string phoenix reads. What phoenix keeps without reading (unknown
// keys, dns records) is left as it is.
func (l *loader) walkKnown(v any, t reflect.Type, ptr string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[json.RawMessage]() {
		return // opaque on purpose (dns records)
	}
	if s, ok := v.(string); ok {
		l.problemIf(ptr, controlCharProblem(s))
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		fields := jsonFields(t)
		for key, val := range obj {
			child := ptr + "/" + escapePointer(key)
			if ft, ok := fields[key]; ok {
				l.walkKnown(val, ft, child)
				continue
			}
			l.warnKey(child, "%s", unknownKeyMessage(t, key))
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			l.walkKnown(e, t.Elem(), ptr+"/"+strconv.Itoa(i))
		}
	}
}

func unknownKeyMessage(owner reflect.Type, key string) string {
	switch owner {
	case reflect.TypeFor[configShape](), reflect.TypeFor[VM]():
		switch key {
		case "traefik_service", "portainer_environment_name", "portainer_agent_hostname", "swarm_role", "node_labels":
			return "used by the original project's traefik/portainer/swarm managers; kept, phoenix does nothing with it"
		}
		return "unknown key; kept, phoenix does nothing with it"
	}
	switch key {
	case "pre_features", "post_features": // the original's early configs
		return fmt.Sprintf("unknown key, ignored; did you mean %q?", strings.ReplaceAll(key, "_", "-"))
	}
	return "unknown key, ignored"
}

// jsonFields maps the JSON names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// localPath expands ~ and makes a relative path absolute against base.
func localPath(p, base string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return p, fmt.Errorf("expand %q: %w", p, err)
		}
		return filepath.Join(home, p[1:]), nil
	}
	if p == "" || filepath.IsAbs(p) {
		return p, nil
	}
	abs, err := filepath.Abs(filepath.Join(base, p))
	if err != nil {
		return p, fmt.Errorf("resolve %q: %w", p, err)
	}
	return abs, nil
}
