package playbooks

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/tasks"
)

// ResolvedStep is one step bound to one VM (and one loop item): what the
// runner checks and applies.
type ResolvedStep struct {
	Name       string         `yaml:"name" json:"name"`
	Kind       string         `yaml:"kind" json:"kind"`
	Params     map[string]any `yaml:"params,omitempty" json:"params,omitempty"`
	Skipped    bool           `yaml:"skipped,omitempty" json:"skipped,omitempty"`
	SkipReason string         `yaml:"skip_reason,omitempty" json:"skip_reason,omitempty"`
	// Task is built from Params at render time, so bad parameters fail
	// before anything runs. Nil when Skipped.
	Task tasks.Task `yaml:"-" json:"-"`
}

// Render expands pb for vm into the steps to run, in order.
//
// Substitution rules, in `with`, `name`, `when` and `loop`:
//   - A string that is exactly `${path}` becomes the value at path with its
//     type (number, bool, list, map); inside a longer string the value is
//     interpolated as text (lists and maps as JSON).
//   - Paths start at `vm` (the VM config as JSON, defaults merged) or, in a
//     looped step, `item`. Segments are keys (`-` allowed, as in
//     `snapshots.pre-features`) or list indexes (`nfs_shares.0.host_path`).
//   - A missing path is an error naming the step and the path, except:
//     `${path?}` is optional: missing leaves the parameter out (or the list
//     element; inside text it is ""); in `when`, missing means false; in
//     `loop`, missing means no items.
//   - `when` skips the step when its value is empty, zero, false or missing;
//     `!${path}` negates; `${a} && !${b}` needs every term to hold. A
//     playbook's own `when` skips all of its steps.
//   - A loop over no items gives one skipped step.
//   - A skipped step's reason is its `skip` text (the playbook's, when the
//     playbook's `when` skipped it), else the config path and its value in
//     plain words ("snapshots.pre-features is not set"): no reason, step
//     name or error shows `${…}` to a person.
//   - A secret (user_config.password) keeps its type when substituted
//     exactly, and text built with it becomes a secret as a whole, so it is
//     masked in every printed form and revealed only to the task.
func Render(pb *Playbook, vm *inventory.VM, reg tasks.Registry) ([]ResolvedStep, error) {
	vars := vm.Vars()
	top := scope{vm: vars}
	runs, skipReason, err := top.condition(pb.When)
	if err != nil {
		return nil, fmt.Errorf("%s: when: %w", pb.File, err)
	}
	if !runs {
		if skipReason, err = top.skipText(pb.Skip, skipReason); err != nil {
			return nil, fmt.Errorf("%s: skip: %w", pb.File, err)
		}
	}
	var out []ResolvedStep
	for _, s := range pb.Tasks {
		where := fmt.Sprintf("%s:%d: step %q", pb.File, s.Line, displayName(vars, s.Name))
		factory, ok := reg[s.Kind]
		if !ok {
			return nil, fmt.Errorf("%s: unknown kind %q (registered: %s)", where, s.Kind, strings.Join(reg.Kinds(), ", "))
		}
		if !runs {
			out = append(out, ResolvedStep{Name: skippedName(vars, s.Name), Kind: s.Kind, Skipped: true, SkipReason: skipReason})
			continue
		}
		items := []any{nil}
		looped := s.Loop != ""
		if looped {
			items, err = loopItems(scope{vm: vars}, s.Loop)
			if err != nil {
				return nil, fmt.Errorf("%s: loop: %w", where, err)
			}
			if len(items) == 0 {
				why, err := top.skipText(s.Skip, "nothing in "+plainRefs(s.Loop))
				if err != nil {
					return nil, fmt.Errorf("%s: skip: %w", where, err)
				}
				out = append(out, ResolvedStep{Name: skippedName(vars, s.Name), Kind: s.Kind, Skipped: true, SkipReason: why})
				continue
			}
		}
		for i, item := range items {
			sc := scope{vm: vars, item: item, hasItem: looped}
			rs, err := sc.resolve(s, factory)
			switch {
			case err != nil && looped:
				return nil, fmt.Errorf("%s: item %d of %s: %w", where, i+1, plainRefs(s.Loop), err)
			case err != nil:
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			out = append(out, rs)
		}
	}
	return out, nil
}

// resolve renders one step for one item.
func (sc scope) resolve(s Step, factory tasks.Factory) (ResolvedStep, error) {
	ok, reason, err := sc.condition(s.When)
	if err != nil {
		return ResolvedStep{}, fmt.Errorf("when: %w", err)
	}
	if !ok {
		if reason, err = sc.skipText(s.Skip, reason); err != nil {
			return ResolvedStep{}, fmt.Errorf("skip: %w", err)
		}
		name, _, _ := sc.value(s.Name, true)
		return ResolvedStep{Name: text(name), Kind: s.Kind, Skipped: true, SkipReason: reason}, nil
	}
	name, _, err := sc.value(s.Name, false)
	if err != nil {
		return ResolvedStep{}, fmt.Errorf("name: %w", err)
	}
	params := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(s.With)) { // sorted: the same error every time
		v, keep, err := sc.deep(s.With[k], "with."+k)
		if err != nil {
			return ResolvedStep{}, err
		}
		if keep {
			params[k] = v
		}
	}
	task, err := factory(params)
	if err != nil {
		return ResolvedStep{}, fmt.Errorf("%s: %w", s.Kind, err)
	}
	return ResolvedStep{Name: text(name), Kind: s.Kind, Params: params, Task: task}, nil
}

// scope is what `${…}` can see.
type scope struct {
	vm      map[string]any
	item    any
	hasItem bool
}

var refPattern = regexp.MustCompile(`\$\{([^}]*)\}`)
var segmentPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// deep substitutes every string inside v (a YAML value). keep is false for
// an optional reference that is missing.
func (sc scope) deep(v any, at string) (any, bool, error) {
	switch x := v.(type) {
	case string:
		r, found, err := sc.value(x, false)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", at, err)
		}
		return r, found, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			r, keep, err := sc.deep(x[k], at+"."+k)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out[k] = r
			}
		}
		return out, true, nil
	case []any:
		out := make([]any, 0, len(x))
		for i, e := range x {
			r, keep, err := sc.deep(e, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, false, err
			}
			if keep {
				out = append(out, r)
			}
		}
		return out, true, nil
	}
	return normalize(v), true, nil
}

// value substitutes the references in s. found is false when s is exactly
// one reference and it is missing (allowed when optional or lenient).
// lenient treats every missing reference as optional (`when`).
func (sc scope) value(s string, lenient bool) (any, bool, error) {
	if m := refPattern.FindStringSubmatch(s); m != nil && m[0] == s {
		v, found, optional, err := sc.lookup(m[1])
		if err != nil {
			return nil, false, err
		}
		if !found && !optional && !lenient {
			return nil, false, missing(m[1])
		}
		return v, found, nil
	}
	var firstErr error
	secret := false
	out := refPattern.ReplaceAllStringFunc(s, func(ref string) string {
		inner := ref[2 : len(ref)-1]
		v, found, optional, err := sc.lookup(inner)
		switch {
		case err != nil:
			firstErr = cmpErr(firstErr, err)
		case !found && !optional && !lenient:
			firstErr = cmpErr(firstErr, missing(inner))
		}
		if sec, ok := v.(inventory.Secret); ok {
			secret = true
			return sec.Reveal()
		}
		return text(v)
	})
	if firstErr != nil {
		return nil, false, firstErr
	}
	if secret {
		return inventory.Secret(out), true, nil
	}
	return out, true, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func missing(ref string) error { return fmt.Errorf("%s is not set", ref) }

// lookup resolves "vm.a.b" or "item.x" (a trailing "?" marks it optional).
func (sc scope) lookup(ref string) (v any, found, optional bool, err error) {
	ref, optional = strings.CutSuffix(strings.TrimSpace(ref), "?")
	parts := strings.Split(ref, ".")
	var cur any
	switch {
	case parts[0] == "vm":
		cur = sc.vm
	case parts[0] == "item" && sc.hasItem:
		cur = sc.item
	case parts[0] == "item":
		return nil, false, optional, fmt.Errorf("%s: item is only set in a step with a loop", ref)
	default:
		return nil, false, optional, fmt.Errorf("%s: a reference starts with vm. or item.", ref)
	}
	for _, p := range parts[1:] {
		if !segmentPattern.MatchString(p) {
			return nil, false, optional, fmt.Errorf("%s: bad path segment %q", ref, p)
		}
		switch c := cur.(type) {
		case map[string]any:
			cur, found = c[p]
		case []any:
			i, convErr := strconv.Atoi(p)
			found = convErr == nil && i >= 0 && i < len(c)
			if found {
				cur = c[i]
			}
		default:
			found = false
		}
		if !found || cur == nil {
			return nil, false, optional, nil
		}
	}
	return cur, true, optional, nil
}

// loopItems resolves a loop reference to its list; missing is no items.
func loopItems(sc scope, ref string) ([]any, error) {
	v, _, err := sc.value(ref, true)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return x, nil
	}
	return nil, fmt.Errorf("%s is %s, not a list", plainRefs(ref), text(v))
}

// text is the string form of a substituted value.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case inventory.Secret:
		return x.String()
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case inventory.Secret:
		return x != ""
	case int:
		return x != 0
	case float64:
		return x != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// condition evaluates a `when`: "" holds; "${ref}" holds when the value is
// set and not empty, zero or false; "!${ref}" when it is not; terms joined
// by "&&" hold when each does. reason says why the first one that does not
// hold does not: "x is not set", "is_template is true".
func (sc scope) condition(when string) (ok bool, reason string, err error) {
	if when == "" {
		return true, "", nil
	}
	for _, term := range strings.Split(when, "&&") {
		if ok, reason, err := sc.term(term); err != nil || !ok {
			return false, reason, err
		}
	}
	return true, "", nil
}

// term evaluates one "${ref}" or "!${ref}" of a condition.
func (sc scope) term(term string) (ok bool, reason string, err error) {
	expr, negate := strings.CutPrefix(strings.TrimSpace(term), "!")
	if expr == "" {
		return false, "", fmt.Errorf("%q: a condition term is empty", term)
	}
	v, found, err := sc.value(expr, true)
	if err != nil {
		return false, "", err
	}
	if truthy(v) != negate {
		return true, "", nil
	}
	what := plainRefs(expr)
	switch {
	case !found:
		return false, what + " is not set", nil
	case v == "":
		return false, what + " is empty", nil
	}
	return false, what + " is " + text(v), nil
}

// skipText is a skipped step's reason: its skip text, rendered, or the
// fallback when it has none.
func (sc scope) skipText(skip, fallback string) (string, error) {
	if skip == "" {
		return fallback, nil
	}
	v, _, err := sc.value(skip, true)
	if err != nil {
		return "", err
	}
	return text(v), nil
}

// plainRefs writes each reference in s as the path a person knows from the
// config: "${vm.snapshots.pre-features}" → "snapshots.pre-features",
// "${item.options?}" → "item.options".
func plainRefs(s string) string {
	return refPattern.ReplaceAllStringFunc(s, func(ref string) string {
		p := strings.TrimSuffix(strings.TrimSpace(ref[2:len(ref)-1]), "?")
		return strings.TrimPrefix(p, "vm.")
	})
}

// displayName is a step's name for messages about the step itself (before
// any item is known): `${vm…}` substituted where it can be, each
// `${item…}` shown as "…".
func displayName(vars map[string]any, name string) string {
	out := refPattern.ReplaceAllStringFunc(name, func(ref string) string {
		if strings.HasPrefix(ref, "${item") {
			return "…"
		}
		v, found, _ := scope{vm: vars}.value(ref, true)
		if !found {
			return plainRefs(ref)
		}
		return text(v)
	})
	return strings.Join(strings.Fields(out), " ")
}

// skippedName is the name of a step skipped without an item (a loop with
// no items, a playbook that does not apply): `${item…}` dropped, the rest
// substituted where it can be.
func skippedName(vars map[string]any, name string) string {
	out := refPattern.ReplaceAllStringFunc(name, func(ref string) string {
		if strings.HasPrefix(ref, "${item") {
			return ""
		}
		return ref
	})
	v, _, _ := scope{vm: vars}.value(out, true)
	return strings.Join(strings.Fields(text(v)), " ")
}

// normalize gives YAML literals the types of inventory.VM.Vars: int for
// whole numbers, float64, string, bool, []any, map[string]any.
func normalize(v any) any {
	switch x := v.(type) {
	case uint64:
		return int(x)
	case int64:
		return int(x)
	case uint:
		return int(x)
	case float32:
		return float64(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}
