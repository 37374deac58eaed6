package pvesim

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Perl's JSON encoder as PVE uses it: canonical (keys sorted at every
// level) and utf8 output. Pretty mode indents by three spaces and puts a
// space on both sides of the colon; compact mode has no whitespace.
// Values are map[string]any, []any, string, bool, nil, json.Number and Go
// integers or floats.

// perlJSONPretty is to_json($v, {pretty => 1, canonical => 1, utf8 => 1}).
func perlJSONPretty(v any) string {
	var b strings.Builder
	encodeJSON(&b, v, true, 0)
	b.WriteByte('\n')
	return b.String()
}

// perlJSONCompact is pvesh's --output-format json (without the newline).
func perlJSONCompact(v any) string {
	var b strings.Builder
	encodeJSON(&b, v, false, 0)
	return b.String()
}

func encodeJSON(b *strings.Builder, v any, pretty bool, level int) {
	indent := func(l int) {
		if pretty {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat("   ", l))
		}
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case string:
		writeJSONString(b, x)
	case json.Number:
		b.WriteString(x.String())
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		b.WriteString(strconv.FormatFloat(x, 'g', 15, 64))
	case map[string]any:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			indent(level + 1)
			writeJSONString(b, k)
			if pretty {
				b.WriteString(" : ")
			} else {
				b.WriteByte(':')
			}
			encodeJSON(b, x[k], pretty, level+1)
		}
		indent(level)
		b.WriteByte('}')
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			indent(level + 1)
			encodeJSON(b, e, pretty, level+1)
		}
		indent(level)
		b.WriteByte(']')
	default:
		panic(fmt.Sprintf("perl JSON: unsupported type %T", v))
	}
}

// writeJSONString escapes like JSON::XS: quote, backslash and control
// characters; everything else, 0x7f and non-ASCII included, stays as is.
func writeJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// latin1 turns bytes into a string of the runes of the same values. PVE
// decodes guest output into a Perl byte string and encodes it as UTF-8
// text, so every byte >= 0x80 comes out as the character of that value.
func latin1(p []byte) string {
	var b strings.Builder
	b.Grow(len(p))
	for _, c := range p {
		b.WriteRune(rune(c))
	}
	return b.String()
}

// fromLatin1 reverses latin1; ok is false for runes above U+00FF (Perl's
// "Wide character" case).
func fromLatin1(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n == 1 {
			out = append(out, s[0])
		} else if r > 0xff {
			return nil, false
		} else {
			out = append(out, byte(r))
		}
		s = s[n:]
	}
	return out, true
}
