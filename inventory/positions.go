package inventory

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
)

// positions knows where every value of a JSON document starts, by JSON
// pointer, so problems found on the decoded value can name line:column.
type positions struct {
	lineStarts []int          // byte offset of the first byte of each line
	values     map[string]int // pointer -> offset of the value
	keys       map[string]int // pointer -> offset of the member's key
	// dupKeys are object members whose key appeared before in the same
	// object (encoding/json keeps the last).
	dupKeys []dupKey
}

// dupKey is a repeated member: its pointer and the offsets of the key's
// first appearance and of this one.
type dupKey struct {
	ptr       string
	first, at int
}

// scanPositions walks data, which must be valid JSON, with the token
// decoder and records the offset of every value and member key.
func scanPositions(data []byte) (*positions, error) {
	p := &positions{values: map[string]int{}, keys: map[string]int{}, lineStarts: lineStarts(data)}
	s := &posScanner{data: data, dec: json.NewDecoder(bytes.NewReader(data)), p: p}
	s.dec.UseNumber()
	return p, s.value("")
}

type posScanner struct {
	data []byte
	dec  *json.Decoder
	p    *positions
}

// next is the offset where the next token starts: InputOffset is the end of
// the previous token, before any whitespace, ':' or ','.
func (s *posScanner) next() int {
	i := int(s.dec.InputOffset())
	for i < len(s.data) {
		switch s.data[i] {
		case ' ', '\t', '\r', '\n', ':', ',':
			i++
			continue
		}
		break
	}
	return i
}

func (s *posScanner) value(ptr string) error {
	s.p.values[ptr] = s.next()
	tok, err := s.dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for s.dec.More() {
			at := s.next()
			kt, err := s.dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			child := ptr + "/" + escapePointer(key)
			if seen[key] {
				s.p.dupKeys = append(s.p.dupKeys, dupKey{ptr: child, first: s.p.keys[child], at: at})
			} else {
				s.p.keys[child] = at
			}
			seen[key] = true
			if err := s.value(child); err != nil {
				return err
			}
		}
		_, err = s.dec.Token() // '}'
	case json.Delim('['):
		for i := 0; s.dec.More(); i++ {
			if err := s.value(ptr + "/" + strconv.Itoa(i)); err != nil {
				return err
			}
		}
		_, err = s.dec.Token() // ']'
	}
	return err
}

// lineStarts returns the offset of the first byte of every line.
func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// lineCol converts a byte offset to a 1-based line and byte column.
func (p *positions) lineCol(off int) (int, int) {
	line := sort.Search(len(p.lineStarts), func(i int) bool { return p.lineStarts[i] > off })
	return line, off - p.lineStarts[line-1] + 1
}

// at returns line:column of the value at pointer, or of its nearest
// enclosing value when the pointer names something missing.
func (p *positions) at(ptr string) (int, int) {
	return nearest(ptr, func(ptr string) (int, int, bool) {
		off, ok := p.values[ptr]
		if !ok {
			return 0, 0, false
		}
		line, col := p.lineCol(off)
		return line, col, true
	})
}

// nearest returns the position lookup gives for ptr or, when ptr names
// something missing, for its nearest enclosing value.
func nearest(ptr string, lookup func(ptr string) (line, col int, ok bool)) (int, int) {
	for {
		if line, col, ok := lookup(ptr); ok {
			return line, col
		}
		i := strings.LastIndexByte(ptr, '/')
		if i < 0 {
			return 0, 0
		}
		ptr = ptr[:i]
	}
}

// keyAt returns line:column of the key of the member at pointer.
func (p *positions) keyAt(ptr string) (int, int) {
	if off, ok := p.keys[ptr]; ok {
		return p.lineCol(off)
	}
	return p.at(ptr)
}

// escapePointer escapes one JSON pointer reference token (RFC 6901).
func escapePointer(s string) string {
	// "~" first, so the "~1" of an escaped "/" is not escaped again (RFC 6901).
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// lastToken is the last reference token of a JSON pointer, unescaped.
func lastToken(ptr string) string {
	return unescapePointer(ptr[strings.LastIndexByte(ptr, '/')+1:])
}

// unescapePointer undoes escapePointer: "~1" first, so "~01" reads "~1".
func unescapePointer(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
}

// pointer joins reference tokens into a JSON pointer.
func pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(t))
	}
	return b.String()
}
