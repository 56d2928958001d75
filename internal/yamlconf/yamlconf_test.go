package yamlconf

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type sample struct {
	Listen  string        `yaml:"listen"`
	Timeout time.Duration `yaml:"timeout"`
	On      bool          `yaml:"on"`
	TLS     struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"tls"`
	Clients []struct {
		Name  string `yaml:"name"`
		Allow struct {
			TCP []string `yaml:"tcp"`
			UDP []string `yaml:"udp"`
		} `yaml:"allow"`
	} `yaml:"clients"`
	Profiles map[string]struct {
		Edge string `yaml:"edge"`
	} `yaml:"profiles"`
	Extra   *struct{ Level int } `yaml:"extra"`
	Skipped string               `yaml:"-"`
	inlined `yaml:",inline"`
}

type inlined struct {
	Mode string `yaml:"mode"`
}

func decode(t *testing.T, src string) (*sample, *Error) {
	t.Helper()
	var s sample
	doc, err := Parse([]byte(src))
	if err == nil {
		err = Decode([]byte(src), doc, &s)
	}
	if err == nil {
		return &s, nil
	}
	var e *Error
	require.True(t, errors.As(err, &e), "got %T %v; want *Error", err, err)
	return nil, e
}

// TestSyntaxErrorLines: a syntax error names the line (1-based) where the
// parser met the problem, for the scanner's and the parser's problems.
func TestSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"bad indentation in a section", "listen: x\ntls:\n  cert: a\n key: b\n", 4, "did not find expected key"},
		{"bad indentation first lines", "listen: x\n on: true\n", 2, "mapping values are not allowed in this context"},
		{"tab", "listen: x\ntls:\n  cert: a\n\tkey: b\n", 4, "found a tab character that violates indentation"},
		{"unterminated quote", "listen: x\ntimeout: \"5s\non: true\n", 2, "found unexpected end of stream"},
		{"unclosed list at the end", "listen: x\nclients: [\n", 2, "did not find expected node content"},
		{"unclosed list then a key: the list's line", "listen: x\n\n\nclients: [a, b\non: true\n", 4, "did not find expected ',' or ']'"},
		{"list item in a mapping", "listen: x\ntls:\n  cert: a\n  - b\n", 4, "did not find expected key"},
		{"first line", "- a\nb: c\n", 2, "did not find expected '-' indicator"},
		{"line one", ": : :\n", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, e := decode(t, tc.src)
			require.NotNil(t, e)
			require.Equal(t, tc.line, e.Line, "got %q", e.Error())
			if tc.msg != "" {
				require.Equal(t, tc.msg, e.Msg)
			}
		})
	}
}

// TestUnknownKey: an unknown key is reported on its line with the keys
// valid in its section and the nearest of them.
func TestUnknownKey(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string
	}{
		{"top level", "listen: x\n\nlistn: y\n",
			`line 3: unknown key "listn" (did you mean "listen"?); valid keys: clients, extra, listen, mode, on, profiles, timeout, tls`},
		{"section", "tls:\n  cert: a\n  kye: b\n",
			`line 3: unknown key "kye" in section tls (did you mean "key"?); valid keys: cert, key`},
		{"list item", "clients:\n  - name: a\n  - name: b\n    allow:\n      tpc: [x]\n",
			`line 5: unknown key "tpc" in section clients.1.allow (did you mean "tcp"?); valid keys: tcp, udp`},
		{"map value", "profiles:\n  prod:\n    edge: x\n    token_sha: y\n",
			`line 4: unknown key "token_sha" in section profiles.prod; valid keys: edge`},
		{"pointer to struct, untagged field", "extra:\n  lvl: 1\n",
			`line 2: unknown key "lvl" in section extra (did you mean "level"?); valid keys: level`},
		{"no suggestion when nothing is close", "zzzzzz: 1\n",
			`line 1: unknown key "zzzzzz"; valid keys: clients, extra, listen, mode, on, profiles, timeout, tls`},
		{"skipped field", "skipped: 1\n",
			`line 1: unknown key "skipped"; valid keys: clients, extra, listen, mode, on, profiles, timeout, tls`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, e := decode(t, tc.src)
			require.NotNil(t, e)
			require.Equal(t, tc.want, e.Error())
			require.NotContains(t, e.Error(), "yamlconf.", "no Go type names")
		})
	}
}

// TestTypeError: a value of the wrong type names its line, its key and
// what it should be, in words rather than Go types.
func TestTypeError(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string
	}{
		{"duration", "listen: x\ntimeout: soon\n", `line 2: timeout: "soon" is not a duration, such as 30s or 5m`},
		{"bool", "\non: maybe\n", `line 2: on: "maybe" is not true or false`},
		{"list for a string", "listen:\n  - a\n", `line 2: listen: a list is not a string`},
		{"string for a section", "tls: yes\n", `line 1: tls: "yes" is not a section of keys`},
		{"string for a list", "clients:\n  - name: a\n    allow:\n      tcp: x\n", `line 4: clients.0.allow.tcp: "x" is not a list of strings, such as ["a", "b"]`},
		{"two problems", "on: maybe\ntimeout: soon\n", `line 1: on: "maybe" is not true or false (and 1 more problem)`},
		{"document is a string", "hello\n", `line 1: "hello" is not a section of keys`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, e := decode(t, tc.src)
			require.NotNil(t, e)
			require.Equal(t, tc.want, e.Error())
		})
	}
}

func TestDecodeGood(t *testing.T) {
	s, e := decode(t, "listen: x\ntimeout: 5s\nmode: m\nextra:\n  level: 3\nprofiles:\n  a:\n    edge: e\n")
	require.Nil(t, e)
	require.Equal(t, "x", s.Listen)
	require.Equal(t, 5*time.Second, s.Timeout)
	require.Equal(t, "m", s.Mode)
	require.Equal(t, 3, s.Extra.Level)
	require.Equal(t, "e", s.Profiles["a"].Edge)

	doc, err := Parse([]byte("# only a comment\n"))
	require.NoError(t, err)
	require.Nil(t, doc, "a file without content parses to nil")
}

// TestInlineMap: a struct with an ",inline" map takes any key.
func TestInlineMap(t *testing.T) {
	var v struct {
		Name string            `yaml:"name"`
		Rest map[string]string `yaml:",inline"`
	}
	src := []byte("name: a\nanything: b\n")
	doc, err := Parse(src)
	require.NoError(t, err)
	require.NoError(t, Decode(src, doc, &v))
	require.Equal(t, "b", v.Rest["anything"])
}

func TestAllKeys(t *testing.T) {
	got := AllKeys(&sample{})
	for _, k := range []string{"listen", "tls", "tls.cert", "clients.*.allow.tcp", "profiles.*.edge", "extra.level", "mode"} {
		require.Contains(t, got, k)
	}
	require.NotContains(t, got, "skipped")
}

// FuzzDecode: any input decodes or fails with an *Error whose line is in
// the file.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"listen: x\ntls:\n  cert: a\n key: b\n",
		"clients:\n  - name: a\n    allow:\n      tcp: [x]\n",
		"timeout: \"5s\n",
		"a: &x [1]\nb: *x\n",
		"profiles:\n  p: {edge: e}\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 4096 {
			return
		}
		var s sample
		doc, err := Parse([]byte(src))
		if err == nil && doc != nil {
			err = Decode([]byte(src), doc, &s)
		}
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("got %T %v; want *Error", err, err)
		}
		// YAML breaks lines at \n, \r\n and a lone \r, and (YAML 1.1,
		// as the parser reads it) at NEL, LS and PS.
		lines := 1
		for _, sep := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += strings.Count(strings.ReplaceAll(src, "\r\n", "\n"), sep)
		}
		if e.Line < 0 || e.Line > lines {
			t.Fatalf("line %d outside the file's %d lines: %v", e.Line, lines, e)
		}
	})
}

// TestSyntaxErrorLargeFile: in a large file, finding the line stays
// bounded and still names a line of the file.
func TestSyntaxErrorLargeFile(t *testing.T) {
	var b strings.Builder
	b.WriteString("clients:\n")
	for b.Len() < 4<<20 {
		b.WriteString("  - name: a-client-with-a-long-name\n")
	}
	b.WriteString(" listen: x\n")
	lines := strings.Count(b.String(), "\n")
	_, e := decode(t, b.String())
	require.NotNil(t, e)
	require.Greater(t, e.Line, 0)
	require.LessOrEqual(t, e.Line, lines)
}
