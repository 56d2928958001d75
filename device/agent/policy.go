package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/tetherhq/tether/transport/target"
)

// rule is one allow-list entry: the owner's text and its compiled pattern.
type rule struct {
	text string
	pat  target.Pattern
}

func ruleTexts(rs []rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.text
	}
	return out
}

// Resolver looks up the addresses of a host name. *net.Resolver implements
// it; tests pass their own.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// RefusedError is the answer to a tunnel whose target is outside the
// device's allow list, or whose name resolved to an address the list does
// not admit. errors.Is(err, ErrNotAllowed) is true.
type RefusedError struct {
	Proto   string   // "tcp" or "udp"
	Target  string   // canonical host:port
	Allowed []string // the allow list, as written by the owner
	// Addr is set when the target's name is allowed but resolved to this
	// address, which the list does not admit; Kind says what it is
	// ("loopback", "link-local", "unspecified", or "non-loopback" for a
	// loopback name).
	Addr netip.Addr
	Kind string
}

func (e *RefusedError) Error() string {
	allowed := "nothing"
	if len(e.Allowed) > 0 {
		allowed = strings.Join(e.Allowed, ", ")
	}
	host, port, _ := net.SplitHostPort(e.Target)
	switch {
	case !e.Addr.IsValid():
		return fmt.Sprintf("refused by the device's allow list: %s %s (allowed: %s); the device's owner can add a rule under allow.%s in the agent's config",
			e.Proto, e.Target, allowed, e.Proto)
	case e.Kind == kindNotLoopback:
		return fmt.Sprintf("refused by the device's allow list: %s %s: %s resolved to %s, which is not a loopback address, and %s must stay on this device; the device's owner should fix its resolver (/etc/hosts)",
			e.Proto, e.Target, host, e.Addr, host)
	}
	return fmt.Sprintf("refused by the device's allow list: %s %s: %s resolved to %s, a %s address, which a rule naming a host does not admit (allowed: %s); "+
		"if the device's DNS is wrong, fix it; if the owner means to allow it, add a rule for the address itself, such as %q, under allow.%s in the agent's config",
		e.Proto, e.Target, host, e.Addr, e.Kind, allowed, net.JoinHostPort(e.Addr.String(), port), e.Proto)
}

// Is makes errors.Is(err, ErrNotAllowed) true.
func (e *RefusedError) Is(target error) bool { return target == ErrNotAllowed }

// Kinds of address that only a rule for the address itself admits.
const (
	kindLoopback    = "loopback"
	kindLinkLocal   = "link-local"
	kindUnspecified = "unspecified"
	kindNotLoopback = "non-loopback" // a loopback name that resolved elsewhere
)

// ResolveError is the answer to a tunnel whose target's name could not be
// resolved on the device.
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return fmt.Sprintf("cannot resolve %s on the device: no answer in time; check the device's DNS (/etc/resolv.conf)", e.Host)
	}
	return fmt.Sprintf("cannot resolve %s on the device: %v; check the name and the device's DNS (/etc/resolv.conf, /etc/hosts)", e.Host, e.Err)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// check returns nil when a rule allows t, and a *RefusedError otherwise.
func check(proto string, rules []rule, t target.Target) error {
	if matchAny(rules, t) {
		return nil
	}
	return &RefusedError{Proto: proto, Target: t.String(), Allowed: ruleTexts(rules)}
}

func matchAny(rules []rule, t target.Target) bool {
	for _, r := range rules {
		if r.pat.Match(t) {
			return true
		}
	}
	return false
}

// specialKind names the addresses that a rule naming a host never admits:
// they reach this device itself (loopback, unspecified) or its links
// (link-local), whatever name pointed at them.
func specialKind(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return kindLoopback
	case a.IsUnspecified() || a.Is4() && a.As4()[0] == 0:
		return kindUnspecified
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return kindLinkLocal
	}
	return ""
}

// authorize checks t against rules and returns the addresses the tunnel
// may use. An IP target is its own address. A name must be allowed by a
// rule; it is then resolved once, and every address it resolves to must be
// admitted: by a rule for the address itself, or else by the name's rule
// unless the address is loopback, link-local or unspecified. A loopback
// name ("localhost") must resolve to loopback addresses only. The caller
// connects to these addresses and never looks the name up again.
func authorize(ctx context.Context, res Resolver, proto string, rules []rule, t target.Target) ([]netip.Addr, error) {
	if err := check(proto, rules, t); err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(t.Host); err == nil {
		return []netip.Addr{ip}, nil
	}
	if res == nil {
		res = net.DefaultResolver
	}
	addrs, err := res.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return nil, &ResolveError{Host: t.Host, Err: err}
	}
	if len(addrs) == 0 {
		return nil, &ResolveError{Host: t.Host, Err: errors.New("no addresses")}
	}
	loopName := target.IsLoopback(t.Host)
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		refuse := func(kind string) error {
			return &RefusedError{Proto: proto, Target: t.String(), Allowed: ruleTexts(rules), Addr: a, Kind: kind}
		}
		switch {
		case loopName:
			if !a.IsLoopback() {
				return nil, refuse(kindNotLoopback)
			}
		case matchAny(rules, target.Target{Host: a.String(), Port: t.Port}):
			// A rule admits the address itself.
		case specialKind(a) != "":
			return nil, refuse(specialKind(a))
		}
		out = append(out, a)
	}
	return out, nil
}

// AllowTCP reports whether the config's TCP allow list admits t as
// written, before any name is resolved: nil, or a *RefusedError that names
// the target and the list.
func (c *Config) AllowTCP(t target.Target) error { return check("tcp", c.tcp, t) }

// AllowUDP is AllowTCP for UDP tunnels.
func (c *Config) AllowUDP(t target.Target) error { return check("udp", c.udp, t) }

// AuthorizeTCP checks t against the TCP allow list, resolves its name with
// res (nil means net.DefaultResolver), and returns the addresses a tunnel
// to t may connect to; see the Config documentation for the rules. Errors
// are a *RefusedError or a *ResolveError.
func (c *Config) AuthorizeTCP(ctx context.Context, res Resolver, t target.Target) ([]netip.Addr, error) {
	return authorize(ctx, res, "tcp", c.tcp, t)
}

// AuthorizeUDP is AuthorizeTCP for UDP tunnels.
func (c *Config) AuthorizeUDP(ctx context.Context, res Resolver, t target.Target) ([]netip.Addr, error) {
	return authorize(ctx, res, "udp", c.udp, t)
}

// NameRules returns the rules of an allow list ("tcp" or "udp") that name
// hosts, other than localhost: their addresses come from the device's
// resolver when a tunnel opens.
func (c *Config) NameRules(proto string) []string {
	rules := c.tcp
	if proto == "udp" {
		rules = c.udp
	}
	var out []string
	for _, r := range rules {
		if r.pat.NamesHosts() && !target.IsLoopback(r.pat.Host()) {
			out = append(out, r.text)
		}
	}
	return out
}
