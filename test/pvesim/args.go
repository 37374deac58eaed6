package pvesim

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// ptype is the JSON-schema type of a parameter.
type ptype int

const (
	tString ptype = iota
	tInt
	tBool
	tNumber
)

// prop describes one parameter of a command, positional or option, the way
// PVE's JSON schema does: its type decides how Getopt::Long reads it
// (booleans take an optional value, lists repeat) and how it is verified.
type prop struct {
	name     string
	typ      ptype
	optValue bool                  // value optional, like booleans (interactive passwords)
	list     bool                  // repeatable; joined with "," unless array
	array    bool                  // repeatable and kept as a list (pvesh --command)
	format   func(v string) string // returns the reason when v is invalid
	enum     []string              // allowed values
	min      int64                 // minimum for integers, when hasMin
	hasMin   bool                  //
	maxLen   int                   // maximum length of strings, 0 = none
	required bool                  // a non-positional option that must be given
}

// params are the parsed and verified parameters of one call.
type params struct {
	vals  map[string]string
	lists map[string][]string
	extra []string
}

func (p *params) has(name string) bool   { _, ok := p.vals[name]; return ok }
func (p *params) get(name string) string { return p.vals[name] }

// flag reports a boolean parameter; def when it was not given.
func (p *params) flag(name string, def bool) bool {
	v, ok := p.vals[name]
	if !ok {
		return def
	}
	return v == "1"
}

// num returns an integer parameter; def when it was not given.
func (p *params) num(name string, def int64) int64 {
	v, ok := p.vals[name]
	if !ok {
		return def
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// command is one qm (sub)command or pvesh endpoint.
type command struct {
	path  string   // "guest exec"
	args  []string // positional parameter names; "extra-args" takes the rest
	props []prop
	usage string
}

func (c *command) prop(name string) *prop {
	for i := range c.props {
		if c.props[i].name == name {
			return &c.props[i]
		}
	}
	return nil
}

func (c *command) isArg(name string) bool {
	for _, a := range c.args {
		if a == name {
			return true
		}
	}
	return false
}

// parse reads args like PVE's get_options: Getopt::Long with prefix
// pattern (--|-), permuted positionals, unique prefixes, booleans with an
// optional value, then positional mapping, boolean parsing and schema
// verification. Getopt's own complaints go to stderr.
func (c *command) parse(args []string, stderr io.Writer) (*params, error) {
	p, err := c.getopt(args, stderr)
	if err != nil {
		err.usage = c.usage
		return nil, err
	}
	if err := c.verify(p); err != nil {
		err.usage = c.usage
		return nil, err
	}
	return p, nil
}

func isOption(a string) bool { return len(a) > 1 && a[0] == '-' }

func (c *command) getopt(args []string, stderr io.Writer) (*params, *paramError) {
	p := &params{vals: map[string]string{}, lists: map[string][]string{}}
	var rest []string
	failed := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if !isOption(a) {
			rest = append(rest, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, value, hasValue := strings.Cut(name, "=")
		pr, msg := c.lookup(name)
		if pr == nil {
			fmt.Fprint(stderr, msg)
			failed = true
			continue
		}
		switch {
		case pr.typ == tBool || pr.optValue:
			if !hasValue && i+1 < len(args) && !isOption(args[i+1]) {
				i++
				value = args[i]
			}
		case !hasValue:
			if i+1 >= len(args) || args[i+1] == "--" {
				fmt.Fprintf(stderr, "Option %s requires an argument\n", name)
				failed = true
				continue
			}
			i++
			value = args[i]
		}
		if pr.list || pr.array {
			p.lists[pr.name] = append(p.lists[pr.name], value)
			continue
		}
		p.vals[pr.name] = value
	}
	if failed {
		return nil, badRequest("unable to parse option")
	}
	for _, name := range c.args {
		if name == "extra-args" {
			p.extra = rest
			rest = nil
			break
		}
		if len(rest) == 0 {
			return nil, badRequest("not enough arguments")
		}
		p.vals[name] = rest[0]
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return nil, badRequest("too many arguments")
	}
	for name, vs := range p.lists {
		if pr := c.prop(name); pr != nil && pr.list {
			p.vals[name] = strings.Join(vs, ",")
			delete(p.lists, name)
		}
	}
	for name, v := range p.vals {
		if pr := c.prop(name); pr != nil && pr.typ == tBool {
			b, ok := parseBool(v)
			if !ok {
				return nil, badRequest("unable to parse boolean option")
			}
			p.vals[name] = b
		}
	}
	return p, nil
}

// lookup finds an option by exact name or unique prefix, case-insensitive,
// as Getopt::Long does with auto_abbrev and ignore_case.
func (c *command) lookup(name string) (*prop, string) {
	lname := strings.ToLower(name)
	var hits []*prop
	for i := range c.props {
		pr := &c.props[i]
		if c.isArg(pr.name) {
			continue
		}
		pname := strings.ToLower(pr.name)
		if pname == lname {
			return pr, ""
		}
		if strings.HasPrefix(pname, lname) {
			hits = append(hits, pr)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], ""
	case 0:
		return nil, fmt.Sprintf("Unknown option: %s\n", lname)
	}
	names := make([]string, len(hits))
	for i, h := range hits {
		names[i] = h.name
	}
	return nil, fmt.Sprintf("Option %s is ambiguous (%s)\n", lname, strings.Join(names, ", "))
}

// parseBool accepts what PVE's parse_boolean accepts and returns "1" or "0".
func parseBool(v string) (string, bool) {
	switch strings.ToLower(v) {
	case "", "1", "on", "yes", "true":
		return "1", true
	case "0", "off", "no", "false":
		return "0", true
	}
	return "", false
}

var (
	intRE    = regexp.MustCompile(`^[+-]?\d+$`)
	numberRE = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)
)

// verify checks every given value against its schema; all failures are
// reported together in one "Parameter verification failed." block.
func (c *command) verify(p *params) *paramError {
	errs := map[string]string{}
	for name, v := range p.vals {
		pr := c.prop(name)
		if pr == nil {
			continue
		}
		if reason := pr.check(v); reason != "" {
			errs[name] = reason
		}
	}
	for i := range c.props {
		pr := &c.props[i]
		if !pr.required {
			continue
		}
		if _, ok := p.vals[pr.name]; ok {
			continue
		}
		if _, ok := p.lists[pr.name]; ok {
			continue
		}
		errs[pr.name] = "property is missing and it is not optional"
	}
	if len(errs) > 0 {
		return badParams(errs)
	}
	return nil
}

func (pr *prop) check(v string) string {
	switch pr.typ {
	case tInt:
		if !intRE.MatchString(v) {
			return fmt.Sprintf("type check ('integer') failed - got '%s'", v)
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		if pr.hasMin && n < pr.min {
			return fmt.Sprintf("value must have a minimum value of %d", pr.min)
		}
	case tNumber:
		if !numberRE.MatchString(v) {
			return fmt.Sprintf("type check ('number') failed - got '%s'", v)
		}
	}
	if pr.maxLen > 0 && len([]rune(v)) > pr.maxLen {
		return fmt.Sprintf("value may only be %d characters long", pr.maxLen)
	}
	if len(pr.enum) > 0 {
		found := false
		for _, e := range pr.enum {
			if e == v {
				found = true
				break
			}
		}
		if !found {
			return fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", v, strings.Join(pr.enum, ", "))
		}
	}
	if pr.format != nil {
		if reason := pr.format(v); reason != "" {
			return reason
		}
	}
	return ""
}

// Formats of PVE's JSON schema that pvesim checks.

var (
	vmidRE     = regexp.MustCompile(`^[1-9][0-9]{2,8}$`)
	dnsNameRE  = regexp.MustCompile(`^(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`)
	configIDRE = regexp.MustCompile(`(?i)^[a-z][a-z0-9_-]+$`)
	diskSizeRE = regexp.MustCompile(`^\+?\d+(\.\d+)?[KMGT]?$`)
)

func formatVMID(v string) string {
	if !vmidRE.MatchString(v) {
		return "invalid format - value does not look like a valid VM ID"
	}
	return ""
}

func formatDNSName(v string) string {
	if !dnsNameRE.MatchString(v) {
		return "invalid format - value does not look like a valid DNS name"
	}
	return ""
}

func formatConfigID(v string) string {
	if !configIDRE.MatchString(v) {
		return fmt.Sprintf("invalid format - invalid configuration ID '%s'", v)
	}
	return ""
}

func formatDiskSize(v string) string {
	if !diskSizeRE.MatchString(v) {
		return "value does not match the regex pattern"
	}
	return ""
}

// Standard parameters.

func vmidProp(name string) prop {
	return prop{name: name, typ: tInt, format: formatVMID}
}

func snapnameProp() prop {
	return prop{name: "snapname", format: formatConfigID, maxLen: 40}
}

func boolProp(name string) prop { return prop{name: name, typ: tBool} }
func intProp(name string, min int64) prop {
	return prop{name: name, typ: tInt, min: min, hasMin: true}
}
func strProp(name string) prop { return prop{name: name} }
