package device

import (
	"fmt"
	"strings"

	"github.com/tetherhq/tether/internal/target"
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

// RefusedError is the answer to a tunnel whose target is outside the
// device's allow list. errors.Is(err, ErrNotAllowed) is true.
type RefusedError struct {
	Proto   string   // "tcp" or "udp"
	Target  string   // canonical host:port
	Allowed []string // the allow list, as written by the owner
}

func (e *RefusedError) Error() string {
	allowed := "nothing"
	if len(e.Allowed) > 0 {
		allowed = strings.Join(e.Allowed, ", ")
	}
	return fmt.Sprintf("refused by the device's allow list: %s %s (allowed: %s); the device's owner can add a rule under allow.%s in the agent's config",
		e.Proto, e.Target, allowed, e.Proto)
}

// Is makes errors.Is(err, ErrNotAllowed) true.
func (e *RefusedError) Is(target error) bool { return target == ErrNotAllowed }

// check returns nil when a rule allows t, and a *RefusedError otherwise.
func check(proto string, rules []rule, t target.Target) error {
	for _, r := range rules {
		if r.pat.Match(t) {
			return nil
		}
	}
	return &RefusedError{Proto: proto, Target: t.String(), Allowed: ruleTexts(rules)}
}

// AllowTCP reports whether the config's TCP allow list admits t: nil, or a
// *RefusedError that names the target and the list.
func (c *Config) AllowTCP(t target.Target) error { return check("tcp", c.tcp, t) }

// AllowUDP is AllowTCP for UDP tunnels.
func (c *Config) AllowUDP(t target.Target) error { return check("udp", c.udp, t) }
