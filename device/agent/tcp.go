package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// handleTCP serves a TCP tunnel (0x10): it parses the target, checks it
// against the allow list and resolves its name (both bounded by the dial
// timeout), connects to the addresses that were checked, answers, and
// splices the stream and the connection with half-close.
func (a *Agent) handleTCP(ctx context.Context, st *transport.Stream, payload []byte) {
	log := a.log()
	cfg := a.cfg.Load()
	t, err := target.Parse(string(payload))
	if err != nil {
		_ = wire.WriteError(st, fmt.Sprintf("bad TCP tunnel target: %s; send host:port, such as 127.0.0.1:22", targetReason(err)))
		return
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	addrs, err := cfg.AuthorizeTCP(dctx, a.Resolver, t)
	if err != nil {
		if errors.Is(err, ErrNotAllowed) {
			log.Warn("tcp tunnel refused by the allow list", "target", t.String(), "allow", cfg.TCPAllow(), "reason", err.Error())
		} else {
			log.Debug("tcp tunnel target not resolved", "target", t.String(), "err", err)
		}
		_ = wire.WriteError(st, err.Error())
		return
	}
	c, err := dialAddrs(dctx, addrs, t.Port)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("dial tcp %s: no answer within %v", t, cfg.DialTimeout)
		}
		log.Debug("tcp tunnel dial failed", "target", t.String(), "err", err)
		_ = wire.WriteError(st, err.Error())
		return
	}
	if err := wire.WriteOK(st, nil); err != nil {
		c.Close()
		return
	}
	log.Debug("tcp tunnel open", "target", t.String(), "addr", c.RemoteAddr().String())
	var opts transport.SpliceOptions
	if cfg.StallTimeout > 0 {
		opts.StallTimeout = cfg.StallTimeout
	}
	up, down, err := transport.Splice(ctx, st, c, &opts)
	log.Debug("tcp tunnel closed", "target", t.String(), "to_target", up, "from_target", down, "err", err)
}

// minDialShare is the least time one address gets when a name resolved to
// several and the dial timeout is shared among them (as net.Dialer does).
const minDialShare = 2 * time.Second

// dialAddrs connects to the first of addrs that answers, in order. The
// time left before ctx's deadline is shared among the addresses still to
// try. It returns the first address's error when none answers.
func dialAddrs(ctx context.Context, addrs []netip.Addr, port int) (net.Conn, error) {
	var (
		d        net.Dialer
		firstErr error
	)
	for i, addr := range addrs {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok && i < len(addrs)-1 {
			left := time.Until(deadline)
			share := max(left/time.Duration(len(addrs)-i), min(left, minDialShare))
			actx, cancel = context.WithTimeout(ctx, share)
		}
		c, err := d.DialContext(actx, "tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		cancel()
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// targetReason strips the package prefix from a target.Parse error.
func targetReason(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, target.ErrInvalidTarget.Error()+" "); ok {
		return rest
	}
	return msg
}
