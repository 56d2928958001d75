package udp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tetherhq/tether/transport/target"
)

// Request is the payload of a UDP tunnel stream (0x11):
// "<suggested source port>:<host>:<port>".
type Request struct {
	// SourcePort is the source port the device should try to bind; 0 means
	// any.
	SourcePort int
	// Target is where the device sends the datagrams.
	Target target.Target
}

// String returns the request as its wire payload.
func (r Request) String() string {
	return strconv.Itoa(r.SourcePort) + ":" + r.Target.String()
}

// ParseRequest parses a UDP tunnel payload strictly: the suggested port is
// a plain decimal number in 0..65535 without sign or leading zero, and the
// rest is a target that target.Parse accepts (IPv6 hosts in brackets).
func ParseRequest(payload []byte) (Request, error) {
	s := string(payload)
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return Request{}, fmt.Errorf("%w %q: no ':' after the source port", ErrBadRequest, s)
	}
	src, err := parseSourcePort(s[:i])
	if err != nil {
		return Request{}, fmt.Errorf("%w %q: %v", ErrBadRequest, s, err)
	}
	t, err := target.Parse(s[i+1:])
	if err != nil {
		return Request{}, fmt.Errorf("%w %q: %v", ErrBadRequest, s, err)
	}
	return Request{SourcePort: src, Target: t}, nil
}

// parseSourcePort parses the suggested source port: "0" or 1..65535.
func parseSourcePort(s string) (int, error) {
	if s == "0" {
		return 0, nil
	}
	p, err := target.ParsePort(s)
	if err != nil {
		return 0, fmt.Errorf("source %v", err)
	}
	return p, nil
}

// resolver looks up the addresses of a DNS name; net.DefaultResolver in
// production.
type resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTarget returns the address a tunnel to t sends to: t's IP, or the
// first address of its DNS name that may be a destination.
func resolveTarget(ctx context.Context, r resolver, t target.Target) (netip.Addr, error) {
	if a, err := netip.ParseAddr(t.Host); err == nil {
		a = a.Unmap()
		if err := checkDestination(a); err != nil {
			return netip.Addr{}, err
		}
		return a, nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", t.Host, err)
	}
	var first error
	for _, a := range addrs {
		a = a.Unmap()
		if err := checkDestination(a); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		return a, nil
	}
	if first == nil {
		first = fmt.Errorf("resolve %s: no addresses", t.Host)
	}
	return netip.Addr{}, fmt.Errorf("%s has no usable address: %w", t.Host, first)
}

// refusedError says why a destination is refused; it matches ErrRefused.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return e.reason }
func (e *refusedError) Unwrap() error { return ErrRefused }

func refused(format string, args ...any) error {
	return &refusedError{reason: fmt.Sprintf(format, args...)}
}

// checkDestination refuses addresses a tunnel must never send to: the
// unspecified addresses (and 0.0.0.0/8), multicast, the limited broadcast
// address and the directed broadcast address of any local IPv4 network.
func checkDestination(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return refused("no address")
	case a.IsUnspecified() || (a.Is4() && a.As4()[0] == 0):
		return refused("%v is an unspecified address, not a destination", a)
	case a.IsMulticast():
		return refused("%v is a multicast address; UDP tunnels carry unicast only", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return refused("%v is the broadcast address; UDP tunnels carry unicast only", a)
	case a.Is4() && isLocalBroadcast(a):
		return refused("%v is the broadcast address of a local network; UDP tunnels carry unicast only", a)
	}
	return nil
}

// isLocalBroadcast reports whether a is the directed broadcast address of
// an IPv4 network on one of this host's interfaces.
func isLocalBroadcast(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		ipn, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		ip4 := ipn.IP.To4()
		ones, bits := ipn.Mask.Size()
		if ip4 == nil || bits != 32 || ones >= 31 {
			continue
		}
		var b [4]byte
		for i := range b {
			b[i] = ip4[i] | ^ipn.Mask[len(ipn.Mask)-4+i]
		}
		if netip.AddrFrom4(b) == a {
			return true
		}
	}
	return false
}

// bindAddr is the local address a tunnel to dst binds: loopback of the same
// family when dst is loopback, the unspecified address otherwise; port is
// the suggested source port (0: any).
func bindAddr(dst netip.Addr, port int) netip.AddrPort {
	var ip netip.Addr
	switch {
	case dst.Is4() && dst.IsLoopback():
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case dst.Is4():
		ip = netip.IPv4Unspecified()
	case dst.IsLoopback():
		ip = netip.IPv6Loopback()
	default:
		ip = netip.IPv6Unspecified()
	}
	return netip.AddrPortFrom(ip, uint16(port))
}

// listenFor binds the socket of a tunnel to dst, trying the suggested
// source port first and any port after.
func listenFor(dst netip.Addr, suggested int) (*net.UDPConn, error) {
	network := "udp4"
	if dst.Is6() {
		network = "udp6"
	}
	if suggested != 0 {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(bindAddr(dst, suggested)))
		if err == nil {
			return c, nil
		}
	}
	local := bindAddr(dst, 0)
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("bind %v: %w", local, err)
	}
	return c, nil
}
