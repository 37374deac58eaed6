package inventory

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed phoenix_vm_configs.schema.json
var schemaJSON []byte

// Schema returns the JSON Schema of phoenix_vm_configs.json (a copy).
func Schema() []byte { return bytes.Clone(schemaJSON) }

const schemaURL = "https://github.com/phoenix-hv/phoenix/inventory/phoenix_vm_configs.schema.json"

// validator checks documents against the embedded schema. The schema
// document is kept to read the errorMessage of a failing subschema.
type validator struct {
	doc     any
	schema  *jsonschema.Schema
	printer *message.Printer
}

func newValidator() (*validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	return &validator{doc: doc, schema: sch, printer: message.NewPrinter(language.English)}, nil
}

// validate returns one problem per failing value (pointer + message), without
// positions.
func (v *validator) validate(inst any) []Problem {
	err := v.schema.Validate(inst)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		if err != nil {
			return []Problem{{Message: err.Error()}}
		}
		return nil
	}
	var out []Problem
	v.collect(ve, &out)
	return out
}

// collect flattens the error tree. A subschema with an errorMessage speaks
// for everything below it (so an anyOf reads as one sentence); otherwise the
// leaves are reported.
func (v *validator) collect(e *jsonschema.ValidationError, out *[]Problem) {
	ptr := pointer(e.InstanceLocation...)
	// A value of the wrong type says so, even where an errorMessage would
	// describe the right value: "got a string" is what the user must fix.
	if got, want, ok := typeMismatch(e); ok {
		*out = append(*out, Problem{Pointer: ptr, Message: fmt.Sprintf("got %s, want %s", article(got), strings.Join(want, " or "))})
		return
	}
	if msg := v.errorMessage(e.SchemaURL); msg != "" {
		*out = append(*out, Problem{Pointer: ptr, Message: msg})
		return
	}
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			v.collect(c, out)
		}
		return
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, name := range k.Missing {
			*out = append(*out, Problem{Pointer: ptr + "/" + escapePointer(name), Message: "is required"})
		}
	default:
		*out = append(*out, Problem{Pointer: ptr, Message: e.ErrorKind.LocalizedString(v.printer)})
	}
}

// typeMismatch reports whether every failure under e is a type check at
// e's own value (a plain wrong type, or one no alternative of an anyOf
// accepts), with the type got and the types wanted (with articles).
func typeMismatch(e *jsonschema.ValidationError) (got string, want []string, ok bool) {
	var walk func(e *jsonschema.ValidationError) bool
	walk = func(c *jsonschema.ValidationError) bool {
		if len(c.Causes) == 0 {
			k, isType := c.ErrorKind.(*kind.Type)
			if !isType || !slices.Equal(c.InstanceLocation, e.InstanceLocation) {
				return false
			}
			got = k.Got
			for _, w := range k.Want {
				if w = article(w); !slices.Contains(want, w) {
					want = append(want, w)
				}
			}
			return true
		}
		for _, cc := range c.Causes {
			if !walk(cc) {
				return false
			}
		}
		return true
	}
	return got, want, walk(e)
}

// errorMessage returns the errorMessage of the subschema at url's fragment.
func (v *validator) errorMessage(url string) string {
	_, frag, _ := strings.Cut(url, "#")
	node := v.doc
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = unescapePointer(tok)
		switch n := node.(type) {
		case map[string]any:
			node = n[tok]
		case []any:
			var i int
			if _, err := fmt.Sscan(tok, &i); err != nil || i < 0 || i >= len(n) {
				return ""
			}
			node = n[i]
		default:
			return ""
		}
	}
	m, _ := node.(map[string]any)
	s, _ := m["errorMessage"].(string)
	return s
}

func article(s string) string {
	switch {
	case s == "" || s == "null":
		return s
	case strings.ContainsRune("aeiou", rune(s[0])):
		return "an " + s
	}
	return "a " + s
}
