package target

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"dotted", "127.0.0.1:22", "127.0.0.1:22"},
		{"short two parts", "127.1:22", "127.0.0.1:22"},
		{"short three parts", "10.1.258:80", "10.1.1.2:80"},
		{"hex part", "0x7f.0.0.1:22", "127.0.0.1:22"},
		{"upper hex", "0X7F.0.0.1:22", "127.0.0.1:22"},
		{"octal part", "0177.0.0.1:22", "127.0.0.1:22"},
		{"single number", "2130706433:22", "127.0.0.1:22"},
		{"single hex number", "0x7f000001:22", "127.0.0.1:22"},
		{"zero", "0:80", "0.0.0.0:80"},
		{"ipv6 loopback", "[::1]:22", "[::1]:22"},
		{"ipv6 long form", "[0:0:0:0:0:0:0:1]:22", "[::1]:22"},
		{"ipv6 upper", "[FE80::ABCD]:22", "[fe80::abcd]:22"},
		{"ipv4 mapped", "[::ffff:127.0.0.1]:22", "127.0.0.1:22"},
		{"ipv4 mapped hex", "[::ffff:7f00:1]:22", "127.0.0.1:22"},
		{"ipv6 zone", "[fe80::1%eth0]:22", "[fe80::1%eth0]:22"},
		{"dns lower", "Example.COM:443", "example.com:443"},
		{"dns trailing dot", "example.com.:443", "example.com:443"},
		{"localhost", "localhost:8080", "localhost:8080"},
		{"hex-looking name", "deadbeef:80", "deadbeef:80"},
		{"name with digits", "host-01.lan:80", "host-01.lan:80"},
		{"max port", "a:65535", "a:65535"},
		{"min port", "a:1", "a:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Fatalf("Parse(%q) = %s; want %s", tt.in, got, tt.want)
			}
			again, err := Parse(got.String())
			if err != nil || again != got {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v (canonical form must be a fixed point)", got.String(), again, err, got)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"no port", "127.0.0.1"},
		{"empty host", ":22"},
		{"empty brackets", "[]:22"},
		{"empty port", "127.0.0.1:"},
		{"port zero", "127.0.0.1:0"},
		{"port too large", "127.0.0.1:65536"},
		{"port huge", "127.0.0.1:99999999999999999999"},
		{"port plus", "127.0.0.1:+22"},
		{"port minus", "127.0.0.1:-22"},
		{"port hex", "127.0.0.1:0x16"},
		{"port leading space", "127.0.0.1: 22"},
		{"port trailing space", "127.0.0.1:22 "},
		{"port leading zero", "127.0.0.1:022"},
		{"port name", "127.0.0.1:ssh"},
		{"unbracketed ipv6", "::1:22"},
		{"unclosed bracket", "[::1:22"},
		{"bracket without port", "[::1]"},
		{"bracketed ipv4", "[127.0.0.1]:22"},
		{"ipv4 part too big", "256.0.0.1:22"},
		{"ipv4 last too big", "127.0.0.256:22"},
		{"ipv4 short last too big", "127.16777216:22"},
		{"single too big", "4294967296:22"},
		{"five parts", "1.2.3.4.5:22"},
		{"bad octal", "08.0.0.1:22"},
		{"empty hex", "0x.0.0.1:22"},
		{"ipv4 trailing dot", "127.0.0.1.:22"},
		{"empty label", "a..b:22"},
		{"numeric last label", "example.123:22"},
		{"space in host", "exa mple.com:22"},
		{"slash", "a/b:22"},
		{"at sign", "user@host:22"},
		{"percent", "a%20b:22"},
		{"nul", "a\x00b:22"},
		{"unicode", "exämple.com:22"},
		{"dash edge", "-a.com:22"},
		{"long label", strings.Repeat("a", 64) + ".com:22"},
		{"long name", strings.Repeat("a.", 130) + "com:22"},
		{"bad zone", "[fe80::1%e/0]:22"},
		{"too long", strings.Repeat("a", 600) + ":22"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %s; want an error", tt.in, got)
			}
			if !errors.Is(err, ErrInvalidTarget) {
				t.Fatalf("Parse(%q) error %v; want ErrInvalidTarget", tt.in, err)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.1", true},
		{"0x7f.0.0.1", true},
		{"127.255.255.254", true},
		{"2130706433", true},
		{"::1", true},
		{"[::1]", true},
		{"::ffff:127.0.0.1", true},
		{"0.0.0.0", true},
		{"0", true},
		{"::", true},
		{"localhost", true},
		{"LOCALHOST.", true},
		{"db.localhost", true},
		{"10.0.0.1", false},
		{"128.0.0.1", false},
		{"::2", false},
		{"example.com", false},
		{"localhost.example.com", false},
		{"", false},
		{"bad host", false},
	}
	for _, tt := range tests {
		if got := IsLoopback(tt.host); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v; want %v", tt.host, got, tt.want)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, target string
		want            bool
	}{
		{"127.0.0.1:*", "127.0.0.1:22", true},
		{"127.0.0.1:*", "127.1:22", true},
		{"127.0.0.1:*", "[::ffff:127.0.0.1]:8080", true},
		{"127.0.0.1:*", "127.0.0.2:22", false},
		{"127.1:*", "127.0.0.1:9", true},
		{"*:22", "10.0.0.5:22", true},
		{"*:22", "example.com:22", true},
		{"*:22", "10.0.0.5:25", false},
		{"10.0.0.*:8000-8100", "10.0.0.7:8000", true},
		{"10.0.0.*:8000-8100", "10.0.0.7:8100", true},
		{"10.0.0.*:8000-8100", "10.0.0.7:8101", false},
		{"10.0.0.*:8000-8100", "10.0.0.7:7999", false},
		{"10.0.0.*:8000-8100", "10.0.1.7:8000", false},
		{"10.0.0.*:*", "10.0.0.7.example.com:80", false},
		{"10.0.0.*:*", "10.0.0.example:80", false},
		{"10.*.0.1:*", "10.9.0.1:80", true},
		{"10.*:*", "10.0.0.1:80", false},
		{"localhost:*", "LOCALHOST:5432", true},
		{"localhost:*", "localhost.:5432", true},
		{"localhost:*", "127.0.0.1:5432", false},
		{"[::1]:*", "[::1]:22", true},
		{"[::1]:*", "[0::1]:22", true},
		{"[::1]:*", "127.0.0.1:22", false},
		{"*.example.com:443", "api.example.com:443", true},
		{"*.example.com:443", "a.b.example.com:443", false},
		{"*.example.com:443", "example.com:443", false},
		{"*.example.com:443", "api.example.com.evil.net:443", false},
		{"web-*.lan:80", "web-01.lan:80", true},
		{"web-*.lan:80", "db-01.lan:80", false},
		{"*-*.lan:80", "a-b-c.lan:80", true},
		{"10.0.0.1:22", "10.0.0.1:22", true},
		{"10.0.0.1:22", "10.0.0.1:23", false},
		{"*:*", "anything.example:1", true},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.pattern, err)
		}
		tg, err := Parse(tt.target)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.target, err)
		}
		if got := p.Match(tg); got != tt.want {
			t.Errorf("%q.Match(%q) = %v; want %v", tt.pattern, tt.target, got, tt.want)
		}
	}
}

func TestPatternString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.1:*", "127.0.0.1:*"},
		{"*:22", "*:22"},
		{"10.0.0.*:8000-8100", "10.0.0.*:8000-8100"},
		{"LocalHost:*", "localhost:*"},
		{"[::ffff:127.0.0.1]:22", "127.0.0.1:22"},
		{"[0::1]:*", "[::1]:*"},
		{"a:5-5", "a:5"},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.in, err)
		}
		if got := p.String(); got != tt.want {
			t.Errorf("ParsePattern(%q).String() = %q; want %q", tt.in, got, tt.want)
		}
	}
	if (Pattern{}).Match(Target{Host: "a", Port: 1}) {
		t.Error("zero Pattern matched a target; want no match")
	}
}

func TestParsePatternRejects(t *testing.T) {
	for _, in := range []string{"", "*", "127.0.0.1", "*:", "*:0", "*:65536", "*:22-", "*:-22",
		"*:100-99", "*:+1", "a b:*", "**.com:*", "10.0.0.*:0x16", "[::1:*", "a/b*:*"} {
		if p, err := ParsePattern(in); err == nil {
			t.Errorf("ParsePattern(%q) = %v; want an error", in, p)
		} else if !errors.Is(err, ErrInvalidPattern) {
			t.Errorf("ParsePattern(%q) error %v; want ErrInvalidPattern", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"127.0.0.1:22", "127.1:22", "0x7f.0.0.1:22", "0177.0.0.1:1",
		"2130706433:80", "[::ffff:127.0.0.1]:22", "[fe80::1%eth0]:22", "Example.COM.:443",
		"a:0", "a:65536", "a:+22", "a: 22", "[::1]", "::1:22", "08.1:1", "a..b:1"} {
		f.Add(s)
	}
	star := MustParsePattern("*:*")
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidTarget) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidTarget", s, err)
			}
			return
		}
		if tg.Port < 1 || tg.Port > 65535 || tg.Host == "" {
			t.Fatalf("Parse(%q) = %+v; out of range", s, tg)
		}
		again, err := Parse(tg.String())
		if err != nil || again != tg {
			t.Fatalf("Parse(Parse(%q).String()) = %+v, %v; want %+v", s, again, err, tg)
		}
		if !star.Match(tg) {
			t.Fatalf("*:* does not match %v", tg)
		}
		exact, err := ParsePattern(tg.String())
		if err != nil || !exact.Match(tg) {
			t.Fatalf("pattern %q from a canonical target: %v, match %v", tg.String(), err, err == nil && exact.Match(tg))
		}
		_ = IsLoopback(tg.Host)
	})
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"127.0.0.1:*", "*:22", "10.0.0.*:8000-8100", "localhost:*", "[::1]:*",
		"*.example.com:443", "[fe80::*]:*", "a:5-4", "**:1", "*:0x16"} {
		f.Add(s, "10.0.0.7:8080")
	}
	f.Fuzz(func(t *testing.T, pattern, tgt string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			if !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("ParsePattern(%q) error %v does not wrap ErrInvalidPattern", pattern, err)
			}
			return
		}
		again, err := ParsePattern(p.String())
		if err != nil || again.String() != p.String() {
			t.Fatalf("ParsePattern(%q).String() = %q does not parse back: %v", pattern, p.String(), err)
		}
		if tg, err := Parse(tgt); err == nil && p.Match(tg) != again.Match(tg) {
			t.Fatalf("%q and its canonical form %q disagree on %v", pattern, p.String(), tg)
		}
	})
}

func TestPatternNamesHosts(t *testing.T) {
	cases := []struct {
		pattern string
		want    bool
	}{
		{"gw.lan:8080", true},
		{"*.lan:*", true},
		{"localhost:*", true},
		{"web-*.example.com:443", true},
		{"127.0.0.1:*", false},
		{"0x7f.1:22", false}, // an address in another spelling
		{"10.0.0.*:8000-8100", false},
		{"[::1]:*", false},
		{"[fe80::*]:*", false},
		{"*:22", false},
	}
	for _, tc := range cases {
		t.Run(tc.pattern, func(t *testing.T) {
			p := MustParsePattern(tc.pattern)
			if got := p.NamesHosts(); got != tc.want {
				t.Fatalf("NamesHosts() = %v; want %v", got, tc.want)
			}

		})
	}
}

func TestPatternHost(t *testing.T) {
	for pattern, want := range map[string]string{"0x7f.1:22": "127.0.0.1", "[::1]:*": "::1", "GW.Lan.:1": "gw.lan", "*.LAN:*": "*.lan", "*:22": "*"} {
		if got := MustParsePattern(pattern).Host(); got != want {
			t.Errorf("ParsePattern(%q).Host() = %q; want %q", pattern, got, want)
		}
	}
}
