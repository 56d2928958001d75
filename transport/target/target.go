package target

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidTarget: the text is not a valid "host:port".
	ErrInvalidTarget = errors.New("target: invalid target")
	// ErrInvalidPattern: the text is not a valid host:port pattern.
	ErrInvalidPattern = errors.New("target: invalid pattern")
)

// maxInput bounds the text Parse and ParsePattern accept; a DNS name is at
// most 253 bytes, so this leaves room for brackets, zone and port.
const maxInput = 512

// Target is a canonical host and port.
type Target struct {
	// Host is the canonical host: dotted IPv4, RFC 5952 IPv6 (no brackets),
	// or a lower-case DNS name without a trailing dot.
	Host string
	// Port is in 1..65535.
	Port int
}

// String returns "host:port", with an IPv6 host in brackets.
func (t Target) String() string {
	return JoinHostPort(t.Host, t.Port)
}

// IsIP reports whether the host is an IP address rather than a DNS name.
func (t Target) IsIP() bool {
	_, err := netip.ParseAddr(t.Host)
	return err == nil
}

// JoinHostPort formats host and port, bracketing hosts that contain a colon.
func JoinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// Parse parses "host:port" and returns its canonical form. IPv6 hosts must be
// in brackets. It rejects empty hosts, characters outside DNS names and IP
// literals, and ports that are not plain decimal numbers in 1..65535 (no
// sign, no leading zero, no spaces, no hex).
func Parse(s string) (Target, error) {
	if len(s) > maxInput {
		return Target{}, fmt.Errorf("%w: %d bytes is too long", ErrInvalidTarget, len(s))
	}
	hostPart, portPart, err := splitHostPort(s)
	if err != nil {
		return Target{}, fmt.Errorf("%w %q: %v", ErrInvalidTarget, s, err)
	}
	host, err := CanonicalHost(hostPart)
	if err != nil {
		return Target{}, fmt.Errorf("%w %q: %v", ErrInvalidTarget, s, err)
	}
	port, err := ParsePort(portPart)
	if err != nil {
		return Target{}, fmt.Errorf("%w %q: %v", ErrInvalidTarget, s, err)
	}
	return Target{Host: host, Port: port}, nil
}

// splitHostPort splits on the last colon; a host containing colons must be
// bracketed. The brackets are removed from the returned host.
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' after an IPv6 address")
		}
		host = s[1:end]
		rest := s[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("missing ':port' after ']'")
		}
		if host == "" {
			return "", "", errors.New("empty host")
		}
		if !strings.Contains(host, ":") {
			return "", "", errors.New("brackets are for IPv6 addresses only")
		}
		return host, rest[1:], nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", errors.New("missing ':port'")
	}
	host, port = s[:i], s[i+1:]
	if strings.Contains(host, ":") {
		return "", "", errors.New("an IPv6 address must be written in brackets, as [addr]:port")
	}
	if host == "" {
		return "", "", errors.New("empty host")
	}
	return host, port, nil
}

// ParsePort parses a port: decimal digits only, no leading zero, 1..65535.
func ParsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty port")
	}
	if len(s) > 5 {
		return 0, fmt.Errorf("port %q is out of range 1-65535", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q is not a decimal number", s)
		}
	}
	if s[0] == '0' {
		return 0, fmt.Errorf("port %q is out of range 1-65535 or has a leading zero", s)
	}
	n, _ := strconv.Atoi(s)
	if n > 65535 {
		return 0, fmt.Errorf("port %q is out of range 1-65535", s)
	}
	return n, nil
}

// CanonicalHost returns the canonical spelling of a host given without
// brackets or port.
func CanonicalHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	if len(h) > maxInput {
		return "", errors.New("host is too long")
	}
	if strings.Contains(h, ":") {
		return canonicalIPv6(h)
	}
	if ip, ok, err := parseInetAton(h); err != nil {
		return "", err
	} else if ok {
		return ip.String(), nil
	}
	return canonicalDNSName(h)
}

func canonicalIPv6(h string) (string, error) {
	addr, err := netip.ParseAddr(h)
	if err != nil || !addr.Is6() {
		return "", fmt.Errorf("%q is not an IPv6 address", h)
	}
	if z := addr.Zone(); z != "" {
		for i := 0; i < len(z); i++ {
			c := z[i]
			if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
				return "", fmt.Errorf("IPv6 zone %q has a character outside letters, digits, '-', '_' and '.'", z)
			}
		}
	}
	if addr.Is4In6() && addr.Zone() == "" {
		return addr.Unmap().String(), nil
	}
	return addr.String(), nil
}

// parseInetAton reads every spelling inet_aton(3) accepts: "a", "a.b",
// "a.b.c" and "a.b.c.d", each part decimal, octal (leading 0) or hex (0x).
// ok is false when h does not look like a number at all (a DNS name); err is
// set when it looks numeric but does not fit, such as "1.2.3.256" or "08".
func parseInetAton(h string) (addr netip.Addr, ok bool, err error) {
	parts := strings.Split(h, ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		// "1.2.3.4." is not an address; a trailing dot is a DNS spelling.
		// Treat it as numeric so it is rejected rather than taken as a name.
		if looksNumeric(parts[len(parts)-2]) {
			return netip.Addr{}, false, fmt.Errorf("%q is neither an IPv4 address nor a DNS name", h)
		}
		return netip.Addr{}, false, nil
	}
	// A DNS name never ends in a numeric label (no top-level domain is a
	// number), so a host whose last label looks numeric must be an address.
	if !looksNumeric(parts[len(parts)-1]) {
		return netip.Addr{}, false, nil
	}
	if len(parts) > 4 {
		return netip.Addr{}, false, fmt.Errorf("%q has too many parts for an IPv4 address", h)
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, perr := parseAtonPart(p)
		if perr != nil {
			return netip.Addr{}, false, fmt.Errorf("%q is not a valid IPv4 address: %v", h, perr)
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i := 0; i < last; i++ {
		if vals[i] > 255 {
			return netip.Addr{}, false, fmt.Errorf("%q is not a valid IPv4 address: part %d exceeds 255", h, i+1)
		}
		n |= vals[i] << (24 - 8*uint(i))
	}
	if vals[last] >= 1<<(8*uint(4-last)) {
		return netip.Addr{}, false, fmt.Errorf("%q is not a valid IPv4 address: last part is too large", h)
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true, nil
}

// looksNumeric reports whether a label starts like a number: a decimal digit.
// Labels such as "0x1f" and "08" look numeric; "deadbeef" does not.
func looksNumeric(p string) bool {
	return p != "" && p[0] >= '0' && p[0] <= '9'
}

func parseAtonPart(p string) (uint64, error) {
	if p == "" {
		return 0, errors.New("empty part")
	}
	if len(p) > 12 {
		return 0, fmt.Errorf("part %q is too long", p)
	}
	base := 10
	digits := p
	switch {
	case len(p) > 1 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, digits = 16, p[2:]
		if digits == "" {
			return 0, fmt.Errorf("part %q has no hex digits", p)
		}
	case len(p) > 1 && p[0] == '0':
		base, digits = 8, p[1:]
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var ok bool
		switch base {
		case 8:
			ok = c >= '0' && c <= '7'
		case 10:
			ok = c >= '0' && c <= '9'
		case 16:
			ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
		}
		if !ok {
			return 0, fmt.Errorf("part %q is not a base-%d number", p, base)
		}
	}
	v, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		return 0, fmt.Errorf("part %q: %v", p, err)
	}
	return v, nil
}

func canonicalDNSName(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("empty host")
	}
	if len(h) > 253 {
		return "", fmt.Errorf("host name of %d bytes exceeds 253", len(h))
	}
	h = strings.ToLower(h)
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return "", fmt.Errorf("host %q has an empty label", h)
		}
		if len(label) > 63 {
			return "", fmt.Errorf("host %q has a label longer than 63 bytes", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host %q has a label that starts or ends with '-'", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlnum(c) && c != '-' && c != '_' {
				return "", fmt.Errorf("host %q contains %q; use letters, digits, '-', '.' or an IP address", h, rune(c))
			}
		}
	}
	return h, nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// IsLoopback reports whether host names this machine: 127.0.0.0/8, ::1, the
// unspecified addresses (connecting to 0.0.0.0 or :: reaches local
// listeners), "localhost" and names under ".localhost". host may be in any
// spelling Parse accepts, with or without IPv6 brackets.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	c, err := CanonicalHost(host)
	if err != nil {
		return false
	}
	if addr, err := netip.ParseAddr(c); err == nil {
		return addr.IsLoopback() || addr.IsUnspecified()
	}
	return c == "localhost" || strings.HasSuffix(c, ".localhost")
}
