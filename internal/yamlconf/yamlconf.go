// Package yamlconf decodes the project's YAML configuration files (the
// edge's, the agent's and the CLI's) with errors a person can act on: the
// line of the problem (1-based, as an editor counts), the dotted key it is
// at, and for an unknown key the keys that are valid there, derived from
// the target struct's yaml tags.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a file. Its text reads
// "line 12: limits.open_timeout: "soon" is not a duration, such as 30s or 5m".
type Error struct {
	Line int    // 1-based; 0 when the problem has no single line
	Key  string // dotted path such as "clients.0.allow.tcp"; "" when none
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Parse parses data into its document node. It returns nil and no error
// for a file without content (empty, or only comments). A syntax error is
// an *Error on the line of the problem.
func Parse(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(data, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	return &doc, nil
}

// Decode decodes doc, parsed from data, into v, a pointer to a struct. An
// unknown key is an *Error naming its line, the valid keys and the nearest
// one; a value of the wrong type is an *Error naming its key and what it
// should be.
func Decode(data []byte, doc *yaml.Node, v any) error {
	if err := checkKeys(doc, v); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // checkKeys found every unknown key; this is a backstop
	if err := dec.Decode(v); err != nil {
		return decodeError(doc, err)
	}
	return nil
}

// checkKeys reports the first mapping key of doc that the struct v points
// to has no field for, walking into sections, lists and maps.
func checkKeys(doc *yaml.Node, v any) error {
	t := reflect.TypeOf(v)
	n := doc
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n == nil {
		return nil
	}
	return checkNode(n, t, nil)
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// nodeType is a field that keeps its YAML as it is, for its owner to read.
var nodeType = reflect.TypeFor[yaml.Node]()

// opaque reports whether t reads its own YAML, so that its keys are not
// checked or listed here.
func opaque(t reflect.Type) bool {
	return t == nodeType || reflect.PointerTo(t).Implements(unmarshalerType)
}

func checkNode(n *yaml.Node, t reflect.Type, path []string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if opaque(t) {
		return nil // the type reads itself
	}
	if n.Kind == yaml.AliasNode {
		return nil // checked where it is defined
	}
	switch t.Kind() {
	case reflect.Struct:
		if t.String() == "time.Time" || n.Kind != yaml.MappingNode {
			return nil // a wrong kind is a type error, reported by the decoder
		}
		fields := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue // a merge key
			}
			ft, ok := fields.types[k.Value]
			if !ok && fields.open {
				continue
			}
			if !ok {
				return unknownKey(k, path, fields.names)
			}
			if err := checkNode(val, ft, append(slices.Clip(path), k.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			if err := checkNode(item, t.Elem(), append(slices.Clip(path), strconv.Itoa(i))); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkNode(n.Content[i+1], t.Elem(), append(slices.Clip(path), n.Content[i].Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

func unknownKey(k *yaml.Node, path []string, valid []string) error {
	msg := fmt.Sprintf("unknown key %q", k.Value)
	if len(path) > 0 {
		msg += " in section " + strings.Join(path, ".")
	}
	if near := nearest(k.Value, valid); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", near)
	}
	if len(valid) == 0 {
		msg += "; this section takes no keys"
	} else {
		msg += "; valid keys: " + strings.Join(valid, ", ")
	}
	return &Error{Line: k.Line, Msg: msg}
}

// fieldSet is the keys a struct type takes, from its yaml tags.
type fieldSet struct {
	types map[string]reflect.Type
	names []string // sorted
	open  bool     // an ",inline" map takes any other key
}

var fieldCache sync.Map // reflect.Type -> *fieldSet

// structFields returns the keys of struct type t as yaml.v3 names them:
// the tag's name, or the lowercased field name without one; ",inline"
// structs and maps add theirs; "-" and unexported fields are skipped.
func structFields(t reflect.Type) *fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{types: make(map[string]reflect.Type)}
	addFields(t, fs)
	for name := range fs.types {
		fs.names = append(fs.names, name)
	}
	slices.Sort(fs.names)
	fieldCache.Store(t, fs)
	return fs
}

func addFields(t reflect.Type, fs *fieldSet) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				addFields(ft, fs)
			case reflect.Map:
				fs.open = true
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fs.types[name] = f.Type
	}
}

// AllKeys returns every dotted key path a struct type takes, sections
// included, with "*" for a list item or a map key: "clients",
// "clients.*.allow", "clients.*.allow.tcp"... v is a struct or a pointer
// to one. Documentation tests use it to keep a reference complete.
func AllKeys(v any) []string {
	var out []string
	var walk func(t reflect.Type, prefix string, depth int)
	walk = func(t reflect.Type, prefix string, depth int) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			if t.Kind() != reflect.Pointer {
				prefix += ".*"
			}
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.String() == "time.Time" || depth > 10 || opaque(t) {
			return
		}
		for _, name := range structFields(t).names {
			p := strings.TrimPrefix(prefix+"."+name, ".")
			out = append(out, p)
			walk(structFields(t).types[name], p, depth+1)
		}
	}
	walk(reflect.TypeOf(v), "", 0)
	return out
}

// nearest returns the valid key closest to key in edit distance, when it
// is close enough to be a typo.
func nearest(key string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		d := editDistance(strings.ToLower(key), v)
		if d < bestD && d < len(v) {
			best, bestD = v, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// typeWords says in words what a Go type expects in the file.
var typeWords = map[string]string{
	"bool":          "true or false",
	"int":           "a whole number",
	"int8":          "a whole number",
	"int16":         "a whole number",
	"int32":         "a whole number",
	"int64":         "a whole number",
	"uint":          "a whole number, 0 or more",
	"uint8":         "a whole number, 0 or more",
	"uint16":        "a whole number, 0 or more",
	"uint32":        "a whole number, 0 or more",
	"uint64":        "a whole number, 0 or more",
	"float32":       "a number",
	"float64":       "a number",
	"string":        "a string",
	"[]string":      `a list of strings, such as ["a", "b"]`,
	"time.Duration": "a duration, such as 30s or 5m",
}

func describeType(goType string) string {
	goType = strings.TrimLeft(goType, "*")
	if w, ok := typeWords[goType]; ok {
		return w
	}
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.Contains(goType, "."), strings.HasPrefix(goType, "struct"):
		return "a section of keys"
	}
	return goType
}

// describeValue names a YAML value from its tag and text.
func describeValue(tag, val string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a section of keys"
	case "!!null":
		return "an empty value"
	}
	return strconv.Quote(val)
}

// decodeError rewrites the first of yaml.v3's unmarshal errors ("line 7:
// cannot unmarshal !!str `x` into bool") as an *Error naming the key.
func decodeError(doc *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return syntaxError(nil, err)
	}
	line, msg := splitLine(te.Errors[0])
	e := &Error{Line: line, Key: keyAtLine(doc, line), Msg: msg}
	if rest, ok := strings.CutPrefix(msg, "cannot unmarshal "); ok {
		tagVal, into, ok := strings.Cut(rest, " into ")
		if ok {
			tag, val, _ := strings.Cut(tagVal, " ")
			e.Msg = fmt.Sprintf("%s is not %s", describeValue(tag, strings.Trim(val, "`")), describeType(into))
		}
	} else if f, ok := strings.CutPrefix(msg, "field "); ok {
		name, _, _ := strings.Cut(f, " ")
		e.Msg = fmt.Sprintf("unknown key %q", name)
	}
	if n := len(te.Errors) - 1; n > 0 {
		e.Msg += fmt.Sprintf(" (and %d more problem%s)", n, plural(n))
	}
	return e
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// splitLine splits "line 7: text" into 7 and "text".
func splitLine(msg string) (int, string) {
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "yaml: "))
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return n, text
			}
		}
	}
	return 0, msg
}

// keyAtLine returns the dotted path of the deepest mapping key on line.
func keyAtLine(doc *yaml.Node, line int) string {
	var found string
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				p := append(slices.Clip(path), k.Value)
				if k.Line == line || n.Content[i+1].Line == line {
					found = strings.Join(p, ".")
				}
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := append(slices.Clip(path), strconv.Itoa(i))
				// The first item shares the list's line, which names the
				// list's key already.
				if c.Line == line && c.Kind == yaml.ScalarNode && c.Line != n.Line {
					found = strings.Join(p, ".")
				}
				walk(c, p)
			}
		}
	}
	if doc != nil && line > 0 {
		walk(doc, nil)
	}
	return found
}

// parserProblems are the problems yaml.v3's parser (not its scanner)
// reports. It numbers their lines from 0, and the scanner's from 1.
var parserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found duplicate %TAG directive",
	"found incompatible YAML document",
}

// Bounds of the re-parses syntaxError makes to find the line: how many,
// and how many bytes in all.
const (
	maxRelocate      = 256
	maxRelocateBytes = 8 << 20
)

// syntaxError turns a yaml.v3 syntax error into an *Error on the line of
// the problem. yaml.v3 reports the line where the construct around the
// problem starts (a mapping, a quoted string), and numbers the parser's
// lines from 0: the line is made 1-based, then moved to the first line
// whose prefix of the file fails the same way, which is where the parser
// met the problem.
func syntaxError(data []byte, err error) error {
	line, msg := splitLine(err.Error())
	if data == nil {
		return &Error{Line: line, Msg: msg}
	}
	if line == 0 {
		line = 1 // yaml.v3 leaves out a line 0 (its first line)
	} else if slices.Contains(parserProblems, msg) {
		line++
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	budget := maxRelocateBytes
	for k := line; k <= len(lines) && k < line+maxRelocate; k++ {
		prefix := bytes.Join(lines[:k], nil)
		if budget -= len(prefix); budget < 0 {
			break
		}
		var n yaml.Node
		perr := yaml.Unmarshal(prefix, &n)
		if perr == nil {
			continue
		}
		if _, m := splitLine(perr.Error()); m == msg {
			line = k
			break
		}
	}
	return &Error{Line: min(line, max(len(lines), 1)), Msg: msg}
}
