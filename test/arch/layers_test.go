// Package arch holds tests of the code's shape rather than its behaviour.
package arch

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/phoenix-hv/phoenix/"

// layers ranks every package outside test/: a package imports only
// packages of a lower rank, so no package depends on a layer above it
// (docs/ARCHITECTURE.md, "Layers"). A new package must be given a rank.
var layers = map[string]int{
	"transport": 0, "inventory": 0,
	"transport/ssh": 1, "transport/qga": 1, "transport/fake": 1, "transport/local": 1, "transport/transporttest": 1,
	"transport/agent": 2, "transport/fallback": 2,
	"tasks":       3,
	"tasks/pve":   4,
	"tasks/guest": 5,
	"playbooks":   6, "placement": 6,
	"runner":      7,
	"console":     8,
	"cmd/phoenix": 9,
}

func TestLayers(t *testing.T) {
	root := filepath.Join("..", "..")
	imports := map[string]map[string]bool{} // package → its phoenix imports (non-test files)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "test" || strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		if imports[pkg] == nil {
			imports[pkg] = map[string]bool{}
		}
		for _, spec := range f.Imports {
			p, _ := strconv.Unquote(spec.Path.Value)
			if dep, ok := strings.CutPrefix(p, module); ok {
				imports[pkg][dep] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < len(layers) {
		t.Fatalf("found %d packages, fewer than the %d ranked: is the walk at the module root?", len(imports), len(layers))
	}
	for pkg, deps := range imports {
		rank, ok := layers[pkg]
		if !ok {
			t.Errorf("package %s has no layer: give it a rank in layers", pkg)
			continue
		}
		for dep := range deps {
			r, ok := layers[dep]
			switch {
			case !ok: // test/…: the rig and the simulator are for tests only
				t.Errorf("%s imports %s, which is not a package of the product", pkg, dep)
			case r >= rank:
				t.Errorf("%s (layer %d) imports %s (layer %d): a package imports only lower layers", pkg, rank, dep, r)
			}
		}
	}
}
