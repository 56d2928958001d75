package device

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/tetherhq/tether/internal/target"
	"github.com/tetherhq/tether/transport"
)

// handleTCP serves a TCP tunnel (0x10): it parses the target, checks the
// allow list, dials with the configured timeout, answers, and splices the
// stream and the connection with half-close.
func (a *Agent) handleTCP(ctx context.Context, st *transport.Stream, payload []byte) {
	log := a.log()
	cfg := a.cfg.Load()
	t, err := target.Parse(string(payload))
	if err != nil {
		_ = transport.WriteError(st, fmt.Sprintf("bad TCP tunnel target: %s; send host:port, such as 127.0.0.1:22", targetReason(err)))
		return
	}
	if err := cfg.AllowTCP(t); err != nil {
		log.Warn("tcp tunnel refused by the allow list", "target", t.String(), "allow", cfg.TCPAllow())
		_ = transport.WriteError(st, err.Error())
		return
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	var d net.Dialer
	if !t.IsIP() && target.IsLoopback(t.Host) {
		// "localhost" must stay on this machine whatever the resolver says.
		d.Control = loopbackOnly(t.Host)
	}
	c, err := d.DialContext(dctx, "tcp", t.String())
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("dial tcp %s: no answer within %v", t, cfg.DialTimeout)
		}
		log.Debug("tcp tunnel dial failed", "target", t.String(), "err", err)
		_ = transport.WriteError(st, err.Error())
		return
	}
	if err := transport.WriteOK(st, nil); err != nil {
		c.Close()
		return
	}
	log.Debug("tcp tunnel open", "target", t.String())
	up, down, err := transport.Splice(ctx, st, c, nil)
	log.Debug("tcp tunnel closed", "target", t.String(), "to_target", up, "from_target", down, "err", err)
}

// loopbackOnly refuses to connect a loopback name to an address that is
// not loopback, so that a resolver cannot turn "localhost" into a LAN
// address.
func loopbackOnly(name string) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Unmap().IsLoopback() {
			return fmt.Errorf("%s resolved to %s, which is not a loopback address; refused", name, host)
		}
		return nil
	}
}

// targetReason strips the package prefix from a target.Parse error.
func targetReason(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, target.ErrInvalidTarget.Error()+" "); ok {
		return rest
	}
	return msg
}
