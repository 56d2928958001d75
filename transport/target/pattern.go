package target

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Pattern is a host:port glob that policy uses to allow targets.
//
// The host is "*" (any host), a host in any spelling Parse accepts (it is
// canonicalized the same way), or a glob where each '*' stands for part of
// one label: it never matches '.' or ':'. So "10.0.0.*" matches 10.0.0.7 but
// not 10.0.0.7.example.com, and "*.example.com" matches one label deep. A
// glob made of digits, dots and '*' only matches IPv4 targets.
//
// The port is "*", a port, or an inclusive range "low-high".
type Pattern struct {
	host     string // canonical host, "*" for any, or a glob
	glob     bool   // host contains '*' but is not just "*"
	ipv4Only bool   // glob of digits, dots and '*' only
	lo, hi   int    // inclusive port range; 1-65535 for "*"
	anyPort  bool
}

// ParsePattern parses a pattern such as "127.0.0.1:*", "*:22",
// "10.0.0.*:8000-8100", "localhost:*" or "[::1]:*".
func ParsePattern(s string) (Pattern, error) {
	if len(s) > maxInput {
		return Pattern{}, fmt.Errorf("%w: %d bytes is too long", ErrInvalidPattern, len(s))
	}
	hostPart, portPart, err := splitHostPort(s)
	if err != nil {
		return Pattern{}, fmt.Errorf("%w %q: %v", ErrInvalidPattern, s, err)
	}
	var p Pattern
	if err := p.setHost(hostPart); err != nil {
		return Pattern{}, fmt.Errorf("%w %q: %v", ErrInvalidPattern, s, err)
	}
	if err := p.setPorts(portPart); err != nil {
		return Pattern{}, fmt.Errorf("%w %q: %v", ErrInvalidPattern, s, err)
	}
	return p, nil
}

// MustParsePattern is ParsePattern for patterns known to be valid; it panics
// on an error. For tests and package-level defaults.
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

func (p *Pattern) setHost(h string) error {
	if h == "*" {
		p.host = "*"
		return nil
	}
	if !strings.Contains(h, "*") {
		c, err := CanonicalHost(h)
		if err != nil {
			return err
		}
		p.host = c
		return nil
	}
	h = strings.ToLower(h)
	onlyV4 := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9', c == '.', c == '*':
		case isAlnum(c), c == '-', c == '_', c == ':':
			onlyV4 = false
		default:
			return fmt.Errorf("host glob %q contains %q; use letters, digits, '-', '.', ':' and '*'", h, rune(c))
		}
	}
	if strings.Contains(h, "**") {
		return fmt.Errorf("host glob %q has '**'; one '*' already matches a whole label", h)
	}
	p.host, p.glob, p.ipv4Only = h, true, onlyV4
	return nil
}

func (p *Pattern) setPorts(s string) error {
	if s == "*" {
		p.anyPort, p.lo, p.hi = true, 1, 65535
		return nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		l, err := ParsePort(lo)
		if err != nil {
			return err
		}
		h, err := ParsePort(hi)
		if err != nil {
			return err
		}
		if l > h {
			return fmt.Errorf("port range %q runs backwards", s)
		}
		p.lo, p.hi = l, h
		return nil
	}
	n, err := ParsePort(s)
	if err != nil {
		return err
	}
	p.lo, p.hi = n, n
	return nil
}

// Match reports whether t, a canonical target from Parse, matches p. The zero
// Pattern matches nothing.
func (p Pattern) Match(t Target) bool {
	if p.host == "" || t.Port < p.lo || t.Port > p.hi {
		return false
	}
	switch {
	case p.host == "*":
		return true
	case !p.glob:
		return p.host == t.Host
	case p.ipv4Only:
		addr, err := netip.ParseAddr(t.Host)
		if err != nil || !addr.Is4() {
			return false
		}
	}
	return globMatch(p.host, t.Host)
}

// NamesHosts reports whether p matches targets by DNS name: its host is a
// name or a glob of names, rather than an address, an address glob or
// "*". A policy that trusts such a pattern trusts the resolver for the
// addresses behind the names.
func (p Pattern) NamesHosts() bool {
	switch {
	case p.host == "" || p.host == "*" || p.ipv4Only:
		return false
	case p.glob:
		return !strings.Contains(p.host, ":")
	}
	_, err := netip.ParseAddr(p.host)
	return err != nil
}

// Host returns the pattern's host part, canonical: an address, a name,
// a glob, or "*".
func (p Pattern) Host() string { return p.host }

// String returns the canonical text of the pattern.
func (p Pattern) String() string {
	if p.host == "" {
		return ""
	}
	var port string
	switch {
	case p.anyPort:
		port = "*"
	case p.lo == p.hi:
		port = strconv.Itoa(p.lo)
	default:
		port = strconv.Itoa(p.lo) + "-" + strconv.Itoa(p.hi)
	}
	if strings.Contains(p.host, ":") {
		return "[" + p.host + "]:" + port
	}
	return p.host + ":" + port
}

// globMatch matches name against pattern, where '*' matches any run of bytes
// other than '.' and ':'. Both are split at the separators, which must agree,
// and each label is matched on its own with MatchGlob.
func globMatch(pattern, name string) bool {
	for {
		pi := strings.IndexAny(pattern, ".:")
		ni := strings.IndexAny(name, ".:")
		if (pi < 0) != (ni < 0) {
			return false
		}
		if pi < 0 {
			return MatchGlob(pattern, name)
		}
		if pattern[pi] != name[ni] || !MatchGlob(pattern[:pi], name[:ni]) {
			return false
		}
		pattern, name = pattern[pi+1:], name[ni+1:]
	}
}
