package labels_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/labels"
)

func TestParseSet(t *testing.T) {
	s, err := labels.ParseSet("site=berlin,tier=prod", "rack=")
	require.NoError(t, err)
	require.Equal(t, labels.Set{"site": "berlin", "tier": "prod", "rack": ""}, s)
	require.Equal(t, "rack=,site=berlin,tier=prod", s.String())
	for _, bad := range []string{"site", "=berlin", "si te=x", "site=ber lin", "-site=x", "site=x-", "site=a,site=b", "a=b,,c=d", strings.Repeat("k", 64) + "=v"} {
		_, err := labels.ParseSet(bad)
		require.Error(t, err, bad)
		require.ErrorIs(t, err, labels.ErrSyntax, bad)
	}
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"berlin", "berlin", true},
		{"berlin", "berlin-1", false},
		{"berlin-*", "berlin-1", true},
		{"berlin-*", "berlin-", true},
		{"berlin-*", "berlin", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"*-prod", "eu-west-prod", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"**", "anything", true},
	}
	for _, tt := range tests {
		if got := labels.MatchGlob(tt.pattern, tt.value); got != tt.want {
			t.Errorf("MatchGlob(%q, %q) = %v; want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}

func TestSelector(t *testing.T) {
	set := labels.Set{"site": "berlin", "tier": "prod"}
	tests := []struct {
		sel  string
		want bool
	}{
		{"", true},
		{"site=berlin", true},
		{"site==berlin", true},
		{"site=paris", false},
		{"site!=paris", true},
		{"site!=berlin", false},
		{"rack!=1", true},
		{"site", true},
		{"rack", false},
		{"!rack", true},
		{"!site", false},
		{"site=berlin, tier=prod", true},
		{"site=berlin,tier=test", false},
	}
	for _, tt := range tests {
		sel, err := labels.ParseSelector(tt.sel)
		require.NoError(t, err, tt.sel)
		require.Equal(t, tt.want, sel.Matches(set), "selector %q", tt.sel)
	}
	for _, bad := range []string{"site=berlin,", ",", "site=a b", "!", "site!=", "=x", "a=b=c", strings.Repeat("a", labels.MaxSelectorLen+1)} {
		if bad == "site!=" {
			continue // an empty value is a value
		}
		_, err := labels.ParseSelector(bad)
		require.Error(t, err, bad)
	}
}

func TestURIs(t *testing.T) {
	s := labels.Set{"site": "berlin", "tier": "prod"}
	uris := labels.URIs(s)
	require.Equal(t, "tether://label/site=berlin", uris[0].String())
	var parsed []*url.URL
	for _, u := range uris {
		p, err := url.Parse(u.String())
		require.NoError(t, err)
		parsed = append(parsed, p)
	}
	other, _ := url.Parse("spiffe://example.org/device")
	back, err := labels.FromURIs(append(parsed, other))
	require.NoError(t, err)
	require.Equal(t, s, back)

	for _, bad := range []string{"tether://label/site", "tether://label/site=a%20b", "tether://label/site=x?y=z"} {
		u, err := url.Parse(bad)
		require.NoError(t, err)
		_, err = labels.FromURIs([]*url.URL{u})
		require.Error(t, err, bad)
	}
	dup, _ := url.Parse("tether://label/site=paris")
	_, err = labels.FromURIs(append(parsed, dup))
	require.ErrorContains(t, err, "twice")
}

// FuzzParseSelector: any text either fails or parses to a selector whose
// text parses back to the same selector.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"", "site=berlin", "a!=b,c,!d", "k==v", " a = b ", "!", "a=b,,", "x=y=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := labels.ParseSelector(s)
		if err != nil {
			return
		}
		back, err := labels.ParseSelector(sel.String())
		if err != nil {
			t.Fatalf("%q parsed to %q, which does not parse: %v", s, sel.String(), err)
		}
		if back.String() != sel.String() {
			t.Fatalf("%q: %q then %q", s, sel.String(), back.String())
		}
		sel.Matches(labels.Set{"a": "b"})
	})
}

// FuzzParseSet: a parsed set validates and round-trips through its text
// and through certificate URIs.
func FuzzParseSet(f *testing.F) {
	for _, s := range []string{"site=berlin", "a=,b=c", "=", "a=b,a=c", "k.1-x_y=V"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := labels.ParseSet(s)
		if err != nil {
			return
		}
		require.NoError(t, set.Validate())
		if len(set) > 0 {
			back, err := labels.ParseSet(set.String())
			require.NoError(t, err)
			require.Equal(t, set, back)
		}
		var uris []*url.URL
		for _, u := range labels.URIs(set) {
			p, err := url.Parse(u.String())
			require.NoError(t, err)
			uris = append(uris, p)
		}
		back, err := labels.FromURIs(uris)
		require.NoError(t, err)
		require.Equal(t, len(set), len(back))
	})
}

// FuzzMatchGlob: a pattern without '*' matches only itself; "*" matches
// all.
func FuzzMatchGlob(f *testing.F) {
	f.Add("berlin-*", "berlin-1")
	f.Add("a*b*c", "abc")
	f.Fuzz(func(t *testing.T, p, v string) {
		got := labels.MatchGlob(p, v)
		if !strings.Contains(p, "*") && got != (p == v) {
			t.Fatalf("MatchGlob(%q, %q) = %v", p, v, got)
		}
		if !labels.MatchGlob("*", v) || !labels.MatchGlob(v+"*", v) && !strings.Contains(v, "*") {
			t.Fatalf("star patterns failed on %q", v)
		}
	})
}
