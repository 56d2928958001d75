package cli

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/tetherhq/tether/transport/target"
)

// forwardSpec is one [BIND:]LPORT:HOST:RPORT argument.
type forwardSpec struct {
	// Local is the address to listen on, "127.0.0.1:8080" or ":8080".
	Local string
	// Remote is the canonical target on the device side, "127.0.0.1:80".
	Remote string
}

// defaultBind is where a forward listens when the spec names no address:
// the loopback interface, as ssh -L does.
const defaultBind = "127.0.0.1"

// parseForwardSpecs parses every argument as a forward; a bad one is a
// usage error.
func parseForwardSpecs(args []string) ([]forwardSpec, error) {
	specs := make([]forwardSpec, 0, len(args))
	for _, a := range args {
		spec, err := parseForwardSpec(a)
		if err != nil {
			return nil, &usageError{err.Error()}
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// parseForwardSpec parses [BIND:]LPORT:HOST:RPORT. IPv6 addresses go in
// brackets ("[::1]:8080:[::1]:80"); BIND "*" listens on every interface.
// LPORT 0 picks a free port.
func parseForwardSpec(s string) (forwardSpec, error) {
	fields, err := splitColons(s)
	if err != nil {
		return forwardSpec{}, fmt.Errorf("forward %q: %v", s, err)
	}
	var bind, lport, host, rport string
	switch len(fields) {
	case 3:
		bind, lport, host, rport = defaultBind, fields[0], fields[1], fields[2]
	case 4:
		bind, lport, host, rport = fields[0], fields[1], fields[2], fields[3]
	default:
		return forwardSpec{}, fmt.Errorf("forward %q: want [BIND:]LPORT:HOST:RPORT, such as 8080:127.0.0.1:80", s)
	}
	switch bind {
	case "*":
		bind = ""
	case "":
		return forwardSpec{}, fmt.Errorf("forward %q: empty bind address (use * for every interface)", s)
	default:
		bind = strings.TrimSuffix(strings.TrimPrefix(bind, "["), "]")
		if strings.ContainsAny(bind, "[]") {
			return forwardSpec{}, fmt.Errorf("forward %q: bad bind address", s)
		}
	}
	lp, err := strconv.ParseUint(lport, 10, 16)
	if err != nil || lport == "" || lport[0] == '+' {
		err := fmt.Errorf("forward %q: local port %q must be a number 0-65535 (0 picks a free port)", s, lport)
		if len(fields) == 3 {
			// BIND:LPORT:HOST without its RPORT reads as LPORT:HOST:RPORT.
			err = fmt.Errorf("%w; want [BIND:]LPORT:HOST:RPORT, such as 8080:127.0.0.1:80 or 127.0.0.1:8080:127.0.0.1:80", err)
		}
		return forwardSpec{}, err
	}
	hostForParse := host
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		hostForParse = "[" + host + "]"
	}
	t, err := target.Parse(hostForParse + ":" + rport)
	if err != nil {
		return forwardSpec{}, fmt.Errorf("forward %q: remote %v", s, strings.TrimPrefix(err.Error(), "target: "))
	}
	return forwardSpec{Local: net.JoinHostPort(bind, strconv.Itoa(int(lp))), Remote: t.String()}, nil
}

// splitColons splits s on colons outside square brackets, keeping the
// brackets.
func splitColons(s string) ([]string, error) {
	var (
		out   []string
		start int
		depth int
	)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			if depth > 0 {
				return nil, fmt.Errorf("nested '['")
			}
			depth++
		case ']':
			if depth == 0 {
				return nil, fmt.Errorf("']' without '['")
			}
			depth--
		case ':':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("missing ']'")
	}
	return append(out, s[start:]), nil
}

// parseTarget checks a HOST:PORT argument and returns its canonical form.
func parseTarget(s string) (string, error) {
	t, err := target.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not HOST:PORT (%v); write IPv6 addresses in brackets, as [::1]:22", s,
			strings.TrimPrefix(err.Error(), "target: "))
	}
	return t.String(), nil
}
