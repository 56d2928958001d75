package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// Dial opens a TCP tunnel through o: the device connects to addr
// ("host:port") and the returned net.Conn carries the bytes, with
// half-close through CloseWrite. It fits http.Transport.DialContext:
//
//	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
//		return tcp.Dial(ctx, c, addr)
//	}}
func Dial(ctx context.Context, o transport.Opener, addr string) (net.Conn, error) {
	st, _, err := o.OpenStream(ctx, wire.MsgTCP, []byte(addr))
	if err != nil {
		return nil, err
	}
	return st, nil
}

// DialEarly is Dial without waiting for the device's answer, as TCP Fast
// Open is: the request goes out and the net.Conn comes back at once, so
// its first Write follows the request in the same round trip
// (docs/protocol.md, "Optimistic open"). The answer is read by the first
// Read: a refusal is that Read's error (a *wire.RemoteError, or
// wire.ErrNoAnswer), and the bytes written before it are dropped. Use it
// where a request/answer protocol starts by writing and can take a
// refusal at its first read; Dial suits callers that must know at once
// whether the tunnel opened. o opens optimistically when it is a
// transport.EarlyOpener (a Session, Client or Redialer), and like Dial
// otherwise.
func DialEarly(ctx context.Context, o transport.Opener, addr string) (net.Conn, error) {
	st, err := transport.OpenEarly(ctx, o, wire.MsgTCP, []byte(addr), nil)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// DefaultDialTimeout bounds a Handler's name resolution and connect.
const DefaultDialTimeout = 10 * time.Second

// Handler serves TCP tunnel streams on a device. The zero value serves
// tunnels to loopback targets only; set Authorize to admit others. Its
// Serve method is a device.Handler for wire.MsgTCP.
type Handler struct {
	// Authorize resolves and authorizes a target: it returns the addresses
	// the tunnel may connect to, in the order to try them, or an error
	// whose text is the Error answer. The handler connects to exactly
	// those addresses, so a name cannot resolve to one address for the
	// check and another for the connection. Nil admits loopback targets
	// only (an IP literal, or "localhost" resolved to loopback addresses).
	Authorize func(ctx context.Context, t target.Target) ([]netip.Addr, error)
	// DialTimeout bounds Authorize and the connect together. Zero means
	// DefaultDialTimeout (10 s).
	DialTimeout time.Duration
	// StallTimeout ends a tunnel whose writes made no progress for this
	// long (a target or client that stopped reading); see
	// transport.SpliceOptions. Zero means no bound but the half-close one.
	StallTimeout time.Duration
	// Logger receives refusals (at Warn) and tunnel ends (at Debug); nil
	// discards them.
	Logger *slog.Logger
}

// Serve serves one TCP tunnel stream: it parses the target, authorizes
// it, connects, answers OK and splices until both directions end. Errors
// before the answer become the Error answer.
func (h *Handler) Serve(ctx context.Context, st *transport.Stream, payload []byte) error {
	log := logx.Or(h.Logger)
	t, err := target.Parse(string(payload))
	if err != nil {
		return fmt.Errorf("bad TCP tunnel target: %s; send host:port, such as 127.0.0.1:22", targetReason(err))
	}
	timeout := h.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	authorize := h.Authorize
	if authorize == nil {
		authorize = LoopbackOnly
	}
	addrs, err := authorize(dctx, t)
	if err != nil {
		log.Debug("tcp tunnel refused", "target", t.String(), "reason", err.Error())
		return err
	}
	c, err := dialAddrs(dctx, addrs, t.Port)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("dial tcp %s: no answer within %v", t, timeout)
		}
		err = dialHint(err)
		log.Debug("tcp tunnel dial failed", "target", t.String(), "err", err)
		return err
	}
	early, err := sendEarly(st, c, timeout)
	if err != nil {
		c.Close()
		return err
	}
	if err := wire.WriteOK(st, nil); err != nil {
		c.Close()
		return err
	}
	log.Debug("tcp tunnel open", "target", t.String(), "addr", c.RemoteAddr().String())
	up, down, err := transport.Splice(ctx, st, c, &transport.SpliceOptions{StallTimeout: h.StallTimeout})
	up += early
	log.Debug("tcp tunnel closed", "target", t.String(), "to_target", up, "from_target", down, "err", err)
	return err
}

// sendEarly writes to c the bytes that already arrived on st after its
// opening message, without waiting for any: an optimistic opener's first
// bytes (docs/protocol.md, "Optimistic open"). They go to the target
// before the answer, so that the target works on them while the answer
// travels; the rest, and the end of st, come through the splice. It
// returns how many it wrote; a failed write is the stream's Error answer.
func sendEarly(st *transport.Stream, c net.Conn, timeout time.Duration) (int64, error) {
	bp := firstBufs.Get().(*[]byte)
	defer firstBufs.Put(bp)
	n := st.ReadArrived(*bp)
	if n == 0 {
		return 0, nil
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write((*bp)[:n]); err != nil {
		return 0, fmt.Errorf("write to %s: %w", c.RemoteAddr(), err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return int64(n), nil
}

// LoopbackOnly is the default authorization of a Handler: loopback IP
// literals, and "localhost" when every address it resolves to is loopback.
func LoopbackOnly(ctx context.Context, t target.Target) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(t.Host); err == nil {
		if a.Unmap().IsLoopback() {
			return []netip.Addr{a.Unmap()}, nil
		}
		return nil, fmt.Errorf("tcp %s refused: this device serves tunnels to loopback addresses only", t)
	}
	if !target.IsLoopback(t.Host) {
		return nil, fmt.Errorf("tcp %s refused: this device serves tunnels to loopback addresses only", t)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", t.Host, err)
	}
	for i, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return nil, fmt.Errorf("%s resolved to %s, which is not a loopback address; refused", t.Host, a)
		}
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// minDialShare is the least time one address gets when a name resolved to
// several and the dial timeout is shared among them (as net.Dialer does).
const minDialShare = 2 * time.Second

// dialAddrs connects to the first of addrs that answers, in order. The
// time left before ctx's deadline is shared among the addresses still to
// try. It returns the first address's error when none answers.
func dialAddrs(ctx context.Context, addrs []netip.Addr, port int) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no address to connect to")
	}
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

// dialHint adds to a failed connect what it means, seen from the device.
// Go's text stays whole before it: clients read its phrases (tether socks
// answers "connection refused" and the others with the SOCKS reply of
// that name).
func dialHint(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (nothing listens there, as seen from the device)", err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%w (the device has no route there)", err)
	}
	return err
}

// targetReason strips the package prefix from a target.Parse error.
func targetReason(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, target.ErrInvalidTarget.Error()+" "); ok {
		return rest
	}
	return msg
}
