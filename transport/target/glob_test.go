package target

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"dev-*", "dev-1", true},
		{"dev-*", "dev-", true},
		{"dev-*", "prod-1", false},
		{"*-1", "dev-1", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*b*c", "abcbc", true},
		{"a**", "a", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"exact", "exac", false},
		{"*.example.com", "a.b.example.com", true}, // no separators: Pattern splits labels itself
		{"10.0.0.*", "10.0.0.7", true},
		{"*a", "bbb", false},
	} {
		if got := MatchGlob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("MatchGlob(%q, %q): got %v; want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// globRegexp is the reference MatchGlob must agree with: '*' is ".*", the
// rest is literal.
func globRegexp(pattern string) *regexp.Regexp {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
}

func FuzzMatchGlob(f *testing.F) {
	f.Add("a*b*c", "aXXbYYc")
	f.Add("*", "")
	f.Add("**x*", "yxy")
	f.Add("dev-*", "prod-1")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		// The reference works on runes: keep to valid UTF-8, where
		// matching bytes and matching runes agree.
		if len(pattern) > 64 || len(s) > 256 || !utf8.ValidString(pattern) || !utf8.ValidString(s) {
			return
		}
		want := globRegexp(pattern).MatchString(s)
		if got := MatchGlob(pattern, s); got != want {
			t.Fatalf("MatchGlob(%q, %q): got %v; want %v", pattern, s, got, want)
		}
	})
}
