// Package playbooks holds the built-in playbooks and feature scripts, loads
// playbooks from YAML and renders them for one VM into a resolved task list.
//
// A playbook is a list of steps; each step names one task kind, its
// parameters (`with`), and optionally a `loop` and a `when`. Values are
// taken from the VM config with `${vm.path}` and from the loop item with
// `${item.path}`; see Render for the rules.
package playbooks

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"

	"github.com/phoenix-hv/phoenix/tasks"
)

//go:embed *.yml features/*.sh
var builtin embed.FS

// Playbook is a decoded playbook file.
type Playbook struct {
	Name string `yaml:"name"`
	// When, if false for a VM, skips every step for it (create skips
	// templates: phoenix clones them, it does not build them).
	When string `yaml:"when"`
	// Skip is what a person reads when When skips the playbook for a VM.
	Skip string `yaml:"skip"`
	// Teardown runs dependents before what they depend on (delete: clones
	// before their template, which Proxmox refuses to destroy while linked
	// clones of it exist).
	Teardown bool   `yaml:"teardown"`
	Tasks    []Step `yaml:"tasks"`
	// File is where the playbook came from, for error messages
	// ("playbooks/create.yml" for a built-in one).
	File string `yaml:"-"`
}

// Step is one entry of tasks: as written in the file.
type Step struct {
	Name string         `yaml:"name"`
	Kind string         `yaml:"kind"`
	With map[string]any `yaml:"with"`
	// Loop is a `${vm.x}` reference to a list; the step runs once per item.
	Loop string `yaml:"loop"`
	// When skips the step when its value is empty, zero, false or missing
	// ("!${vm.x}": when it is not).
	When string `yaml:"when"`
	// Skip is what a person reads when the step is skipped (its when is
	// false, its loop has no items), in plain words ("no pre-features
	// snapshot configured"); it may use ${vm.x} (and ${item.x} for a when
	// per item). Without it the reason names the config path.
	Skip string `yaml:"skip"`
	// Line is the step's line in File.
	Line int `yaml:"-"`
}

// Builtins lists the names of the built-in playbooks.
func Builtins() []string {
	names, _ := fs.Glob(builtin, "*.yml")
	for i, n := range names {
		names[i] = strings.TrimSuffix(n, ".yml")
	}
	return names
}

// Load reads a playbook: a built-in name ("create", "create.yml",
// "playbooks/create.yml") or a path on disk. A path that exists on disk
// wins over a built-in of the same name; a bare name is always built-in.
func Load(nameOrPath string) (*Playbook, error) {
	isPath := strings.ContainsRune(nameOrPath, '/') || strings.HasSuffix(nameOrPath, ".yml") || strings.HasSuffix(nameOrPath, ".yaml")
	if isPath {
		data, err := os.ReadFile(nameOrPath)
		if err == nil {
			return Parse(nameOrPath, data)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	name, ok := builtinName(nameOrPath)
	if !ok {
		return nil, fmt.Errorf("playbook %s: no such file and not a built-in playbook (built-in: %s)", nameOrPath, strings.Join(Builtins(), ", "))
	}
	data, err := builtin.ReadFile(name + ".yml")
	if err != nil {
		return nil, err
	}
	return Parse("playbooks/"+name+".yml", data)
}

// builtinName maps "create", "create.yml" and "playbooks/create.yml" to
// the built-in "create".
func builtinName(s string) (string, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "playbooks/"), ".yml")
	if s == "" || strings.ContainsAny(s, "/.") {
		return "", false
	}
	_, err := fs.Stat(builtin, s+".yml")
	return s, err == nil
}

// Parse decodes a playbook strictly: unknown keys, duplicate keys and wrong
// types are errors that name file:line:column.
func Parse(file string, data []byte) (*Playbook, error) {
	var pb Playbook
	if err := yaml.UnmarshalWithOptions(data, &pb, yaml.Strict()); err != nil {
		return nil, positioned(file, err)
	}
	pb.File = file
	if pb.Name == "" {
		pb.Name = strings.TrimSuffix(path.Base(filepath.ToSlash(file)), path.Ext(file))
	}
	if len(pb.Tasks) == 0 {
		return nil, fmt.Errorf("%s: no tasks", file)
	}
	lines, err := stepLines(data, len(pb.Tasks))
	if err != nil {
		return nil, positioned(file, err)
	}
	for i := range pb.Tasks {
		s := &pb.Tasks[i]
		s.Line = lines[i]
		where := fmt.Sprintf("%s:%d: step %d", file, s.Line, i+1)
		switch {
		case s.Kind == "":
			return nil, fmt.Errorf("%s: kind is missing", where)
		case s.Name == "":
			return nil, fmt.Errorf("%s: name is missing", where)
		case s.Loop != "" && refPattern.FindString(s.Loop) != s.Loop:
			return nil, fmt.Errorf("%s: loop must be one ${vm.path} reference, got %q", where, s.Loop)
		}
	}
	return &pb, nil
}

// stepLines returns the line of each entry of tasks:.
func stepLines(data []byte, n int) ([]int, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, err
	}
	lines := make([]int, n)
	for i := range lines {
		p, err := yaml.PathString(fmt.Sprintf("$.tasks[%d]", i))
		if err != nil {
			return nil, err
		}
		node, err := p.FilterFile(f)
		if err != nil {
			return nil, err
		}
		lines[i] = node.GetToken().Position.Line
	}
	return lines, nil
}

// positioned turns a go-yaml error into "file:line:col: message".
func positioned(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		pos := ye.GetToken().Position
		return fmt.Errorf("%s:%d:%d: %s", file, pos.Line, pos.Column, ye.GetMessage())
	}
	return fmt.Errorf("%s: %w", file, err)
}

// Feature returns the script NAME.sh: from the first of dirs that has it
// (user extensions, in order), else the built-in features/NAME.sh. Errors
// do not repeat the feature's name; the caller says which feature.
func Feature(name string, dirs []string) ([]byte, error) {
	if !tasks.ValidFeatureName(name) {
		return nil, fmt.Errorf("%q is not a valid feature name", name)
	}
	file := name + ".sh"
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, file))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	b, err := builtin.ReadFile("features/" + file)
	if err != nil {
		where := "the built-in features"
		if len(dirs) > 0 {
			where = strings.Join(dirs, ", ") + " or " + where
		}
		return nil, fmt.Errorf("no %s in %s (--feature-dir DIR adds a directory of NAME.sh scripts)", file, where)
	}
	return bytes.Clone(b), nil
}
