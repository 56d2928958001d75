// Package labels is the syntax of device labels: key=value pairs that an
// operator gives a device (in its certificate, or in the edge's labels
// file) and that roles and device lists select by.
//
// A key is 1 to 63 letters, digits, '.', '-' and '_', beginning and ending
// with a letter or a digit; a value is the same, or empty. Patterns on
// values (in roles) add '*', which matches any run of characters.
//
// In a device certificate each label is a URI subject alternative name,
// tether://label/<key>=<value> (URIs, FromURIs).
//
// Selectors (ParseSelector) are the syntax of kubectl -l: comma-separated
// requirements that must all hold: k=v (or k==v), k!=v, k (present) and
// !k (absent).
package labels

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Limits.
const (
	// MaxKeyLen and MaxValueLen bound a key and a value.
	MaxKeyLen   = 63
	MaxValueLen = 63
	// MaxLabels is the most labels one device may have.
	MaxLabels = 64
	// MaxSelectorLen bounds a selector's text.
	MaxSelectorLen = 1024
)

// URIPrefix starts the URI SAN of a label in a device certificate.
const URIPrefix = "tether://label/"

// ErrSyntax is wrapped by every error of this package.
var ErrSyntax = errors.New("labels: bad syntax")

// Set is a device's labels, key to value.
type Set map[string]string

// String is the set as "k=v,k2=v2", sorted by key.
func (s Set) String() string {
	keys := s.Keys()
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + s[k]
	}
	return strings.Join(parts, ",")
}

// Keys returns the keys, sorted.
func (s Set) Keys() []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Merge returns base with over's labels on top (over wins for a key both
// have); nil when both are empty.
func Merge(base, over Set) Set {
	if len(base) == 0 && len(over) == 0 {
		return nil
	}
	out := make(Set, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

func word(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// check checks s against the label alphabet; glob admits '*'.
func check(what, s string, max int, empty, glob bool) error {
	if s == "" {
		if empty {
			return nil
		}
		return fmt.Errorf("%w: empty %s", ErrSyntax, what)
	}
	if len(s) > max {
		return fmt.Errorf("%w: %s %.20q... is %d characters; the most is %d", ErrSyntax, what, s, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case word(c), glob && c == '*':
		case c == '.' || c == '-' || c == '_':
			if i == 0 || i == len(s)-1 {
				return fmt.Errorf("%w: %s %q must begin and end with a letter or a digit", ErrSyntax, what, s)
			}
		default:
			return fmt.Errorf("%w: %s %q may hold only letters, digits, '.', '-' and '_'%s", ErrSyntax, what, s, map[bool]string{true: " and '*'"}[glob])
		}
	}
	return nil
}

// ValidKey checks a label key.
func ValidKey(k string) error { return check("label key", k, MaxKeyLen, false, false) }

// ValidValue checks a label value; empty is valid.
func ValidValue(v string) error { return check("label value", v, MaxValueLen, true, false) }

// ValidGlob checks a pattern on label values: a value in which '*'
// matches any run of characters.
func ValidGlob(p string) error { return check("label pattern", p, MaxValueLen, true, true) }

// MatchGlob reports whether value matches pattern, in which '*' matches
// any run of characters (none included) and every other character itself.
func MatchGlob(pattern, value string) bool {
	// Iterative matching with one backtrack point: linear in practice,
	// O(len(pattern)*len(value)) at worst.
	p, v := 0, 0
	star, mark := -1, 0
	for v < len(value) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, v
			p++
		case p < len(pattern) && pattern[p] == value[v]:
			p++
			v++
		case star >= 0:
			p = star + 1
			mark++
			v = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ParsePair parses "key=value".
func ParsePair(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not key=value, such as site=berlin", ErrSyntax, s)
	}
	if err := ValidKey(k); err != nil {
		return "", "", err
	}
	if err := ValidValue(v); err != nil {
		return "", "", err
	}
	return k, v, nil
}

// ParseSet parses "k=v,k2=v2"; every pair of pairs, as from repeated
// --label flags, adds to one set. A key given twice is an error.
func ParseSet(pairs ...string) (Set, error) {
	out := Set{}
	for _, p := range pairs {
		for _, one := range strings.Split(p, ",") {
			k, v, err := ParsePair(strings.TrimSpace(one))
			if err != nil {
				return nil, err
			}
			if _, dup := out[k]; dup {
				return nil, fmt.Errorf("%w: label %s is given twice", ErrSyntax, k)
			}
			out[k] = v
		}
	}
	if len(out) > MaxLabels {
		return nil, fmt.Errorf("%w: %d labels; the most is %d", ErrSyntax, len(out), MaxLabels)
	}
	return out, nil
}

// Validate checks every key and value of s, and their number.
func (s Set) Validate() error {
	if len(s) > MaxLabels {
		return fmt.Errorf("%w: %d labels; the most is %d", ErrSyntax, len(s), MaxLabels)
	}
	for _, k := range s.Keys() {
		if err := ValidKey(k); err != nil {
			return err
		}
		if err := ValidValue(s[k]); err != nil {
			return fmt.Errorf("label %s: %w", k, err)
		}
	}
	return nil
}

// URIs returns the URI SANs that carry s in a certificate, sorted by key.
func URIs(s Set) []*url.URL {
	out := make([]*url.URL, 0, len(s))
	for _, k := range s.Keys() {
		out = append(out, &url.URL{Scheme: "tether", Host: "label", Path: "/" + k + "=" + s[k]})
	}
	return out
}

// FromURIs reads the labels among a certificate's URI SANs: those of
// scheme tether and host label. Other URIs are ignored. A label URI that
// does not parse, or a key given twice, is an error: a certificate that
// says something unclear about a device is not taken at its word.
func FromURIs(uris []*url.URL) (Set, error) {
	var out Set
	for _, u := range uris {
		if u == nil || u.Scheme != "tether" || u.Host != "label" {
			continue
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
			return nil, fmt.Errorf("%w: label URI %q has parts beyond %s<key>=<value>", ErrSyntax, u.String(), URIPrefix)
		}
		k, v, err := ParsePair(strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			return nil, fmt.Errorf("label URI %q: %w", u.String(), err)
		}
		if out == nil {
			out = Set{}
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%w: label %s is in the certificate twice", ErrSyntax, k)
		}
		out[k] = v
	}
	if len(out) > MaxLabels {
		return nil, fmt.Errorf("%w: %d labels; the most is %d", ErrSyntax, len(out), MaxLabels)
	}
	return out, nil
}

// Op is a selector requirement's operator.
type Op int

// The operators of a requirement.
const (
	OpEqual    Op = iota // k=v, k==v
	OpNotEqual           // k!=v: k is absent, or has another value
	OpExists             // k
	OpAbsent             // !k
)

// Requirement is one condition of a selector.
type Requirement struct {
	Key   string
	Op    Op
	Value string
}

// String is the requirement as it is written.
func (r Requirement) String() string {
	switch r.Op {
	case OpNotEqual:
		return r.Key + "!=" + r.Value
	case OpExists:
		return r.Key
	case OpAbsent:
		return "!" + r.Key
	}
	return r.Key + "=" + r.Value
}

// Matches reports whether s meets r.
func (r Requirement) Matches(s Set) bool {
	v, ok := s[r.Key]
	switch r.Op {
	case OpEqual:
		return ok && v == r.Value
	case OpNotEqual:
		return !ok || v != r.Value
	case OpExists:
		return ok
	case OpAbsent:
		return !ok
	}
	return false
}

// Selector is a conjunction of requirements; the empty selector matches
// every set.
type Selector []Requirement

// String is the selector as it is written.
func (sel Selector) String() string {
	parts := make([]string, len(sel))
	for i, r := range sel {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Matches reports whether s meets every requirement.
func (sel Selector) Matches(s Set) bool {
	for _, r := range sel {
		if !r.Matches(s) {
			return false
		}
	}
	return true
}

// ParseSelector parses a selector: requirements separated by commas, each
// k=v, k==v, k!=v, k or !k, spaces around them ignored. The empty string is
// the empty selector.
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelectorLen {
		return nil, fmt.Errorf("%w: the selector is %d bytes; the most is %d", ErrSyntax, len(s), MaxSelectorLen)
	}
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var sel Selector
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		r, err := parseRequirement(part)
		if err != nil {
			return nil, err
		}
		sel = append(sel, r)
	}
	return sel, nil
}

func parseRequirement(s string) (Requirement, error) {
	const how = "use key=value, key!=value, key or !key, such as site=berlin,tier!=test"
	if s == "" {
		return Requirement{}, fmt.Errorf("%w: an empty requirement (two commas in a row?): %s", ErrSyntax, how)
	}
	var r Requirement
	var key string
	switch {
	case strings.HasPrefix(s, "!") && !strings.Contains(s, "="):
		key, r.Op = strings.TrimSpace(s[1:]), OpAbsent
	case strings.Contains(s, "!="):
		key, r.Value, _ = strings.Cut(s, "!=")
		r.Op = OpNotEqual
	case strings.Contains(s, "=="):
		key, r.Value, _ = strings.Cut(s, "==")
	case strings.Contains(s, "="):
		key, r.Value, _ = strings.Cut(s, "=")
	default:
		key, r.Op = s, OpExists
	}
	r.Key, r.Value = strings.TrimSpace(key), strings.TrimSpace(r.Value)
	if err := ValidKey(r.Key); err != nil {
		return Requirement{}, fmt.Errorf("requirement %q: %w; %s", s, err, how)
	}
	if err := ValidValue(r.Value); err != nil {
		return Requirement{}, fmt.Errorf("requirement %q: %w; %s", s, err, how)
	}
	return r, nil
}
