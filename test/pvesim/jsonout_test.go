package pvesim

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestPerlJSON(t *testing.T) {
	tests := []struct {
		name            string
		in              any
		pretty, compact string
	}{
		{
			name:    "exec status sorted, 3-space indent, spaced colon",
			in:      map[string]any{"out-data": "out\n", "exited": 1, "exitcode": 3, "err-data": "err\n"},
			pretty:  "{\n   \"err-data\" : \"err\\n\",\n   \"exitcode\" : 3,\n   \"exited\" : 1,\n   \"out-data\" : \"out\\n\"\n}\n",
			compact: `{"err-data":"err\n","exitcode":3,"exited":1,"out-data":"out\n"}`,
		},
		{
			name:    "nested, empty containers",
			in:      []any{map[string]any{"c": []any{json.Number("1"), "x"}, "b": map[string]any{}, "a": []any{}}},
			pretty:  "[\n   {\n      \"a\" : [],\n      \"b\" : {},\n      \"c\" : [\n         1,\n         \"x\"\n      ]\n   }\n]\n",
			compact: `[{"a":[],"b":{},"c":[1,"x"]}]`,
		},
		{
			name:    "scalars",
			in:      map[string]any{"t": true, "f": false, "n": nil, "i": int64(-5), "pid": json.Number("4243")},
			pretty:  "{\n   \"f\" : false,\n   \"i\" : -5,\n   \"n\" : null,\n   \"pid\" : 4243,\n   \"t\" : true\n}\n",
			compact: `{"f":false,"i":-5,"n":null,"pid":4243,"t":true}`,
		},
		{
			name:    "escapes: quote, backslash, controls; slash and DEL stay",
			in:      map[string]any{"s": "a\"b\\c/d\te\r\x01\x7f"},
			pretty:  "{\n   \"s\" : \"a\\\"b\\\\c/d\\te\\r\\u0001\x7f\"\n}\n",
			compact: "{\"s\":\"a\\\"b\\\\c/d\\te\\r\\u0001\x7f\"}",
		},
		{
			name:    "guest bytes are Latin-1 characters: UTF-8 output gets double-encoded",
			in:      map[string]any{"out-data": latin1([]byte("h\xc3\xa4\xff\n"))},
			pretty:  "{\n   \"out-data\" : \"h\xc3\x83\xc2\xa4\xc3\xbf\\n\"\n}\n",
			compact: "{\"out-data\":\"h\xc3\x83\xc2\xa4\xc3\xbf\\n\"}",
		},
		{name: "empty object", in: map[string]any{}, pretty: "{}\n", compact: "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := perlJSONPretty(tt.in); got != tt.pretty {
				t.Errorf("pretty:\n got %q\nwant %q", got, tt.pretty)
			}
			if got := perlJSONCompact(tt.in); got != tt.compact {
				t.Errorf("compact:\n got %q\nwant %q", got, tt.compact)
			}
		})
	}
}

func TestLatin1RoundTrip(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	s := latin1(all)
	// Standard JSON decoding of our output gives the runes back.
	var decoded string
	if err := json.Unmarshal([]byte(perlJSONCompact(s)), &decoded); err != nil {
		t.Fatal(err)
	}
	back, ok := fromLatin1(decoded)
	if !ok || !bytes.Equal(back, all) {
		t.Fatalf("round trip lost bytes: ok=%v got %x", ok, back)
	}
	if _, ok := fromLatin1("snowman \u2603"); ok {
		t.Fatal("a character above U+00FF must be refused (Perl's wide character)")
	}
}
