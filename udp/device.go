package udp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/internal/ratelimit"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// Device-side defaults.
const (
	// DefaultIdleTimeout ends a tunnel that carried no datagram for this long.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxPacketsPerSecond caps the datagrams one tunnel sends from the
	// device.
	DefaultMaxPacketsPerSecond = 10000
	// DefaultMaxDatagram is the largest datagram relayed: all a frame holds.
	DefaultMaxDatagram = MaxFrameData
	// DefaultMaxReplyRatio caps a tunnel's reply bytes at this many times
	// its request bytes (plus the allowance) over the window.
	DefaultMaxReplyRatio = 10
	// DefaultReplyRatioWindow is the rolling window of the reply cap.
	DefaultReplyRatioWindow = 10 * time.Second
	// DefaultReplyAllowance is the reply bytes per window allowed beyond
	// the ratio: more than the largest datagram, so one answer of any size
	// to a single query passes.
	DefaultReplyAllowance = 64 << 10
	// closeFrameTimeout bounds the write of a close frame to a client that
	// does not read.
	closeFrameTimeout = 5 * time.Second
	// resolveTimeout bounds the DNS lookup of a target name.
	resolveTimeout = 10 * time.Second
)

// DeviceConfig tunes the device side of UDP tunnels. The zero value is
// usable: every zero field takes the default named on it.
type DeviceConfig struct {
	// IdleTimeout ends a tunnel when no datagram went either way for this
	// long. Zero means DefaultIdleTimeout (60 s).
	IdleTimeout time.Duration
	// MaxPacketsPerSecond caps the datagrams one tunnel sends to its target,
	// as a token bucket holding a tenth of a second's worth (at least one).
	// Datagrams over the rate are dropped and counted. Zero means
	// DefaultMaxPacketsPerSecond (10,000); negative means unlimited.
	MaxPacketsPerSecond int
	// MaxDatagram is the largest datagram relayed either way, in bytes.
	// Longer ones are dropped and counted, never truncated. It also sizes
	// the two fixed buffers of a tunnel (about 2 × MaxDatagram bytes, the
	// memory a tunnel holds besides its stream window and socket). Zero
	// means DefaultMaxDatagram (65,535, all a frame can carry).
	MaxDatagram int
	// MaxReplyRatio caps a tunnel's reply traffic, so that a small query
	// answered by a large reply cannot be used to pull traffic through the
	// device at a multiple of what the client sends: over any
	// ReplyRatioWindow, the bytes relayed from the target may total at
	// most MaxReplyRatio times the bytes sent to it, plus ReplyAllowance.
	// Bytes are datagram payload bytes. The datagram that would pass the
	// cap is dropped, and the device ends the tunnel with a close frame
	// whose reason says so (docs/protocol.md). Zero means
	// DefaultMaxReplyRatio (10); negative means no cap.
	MaxReplyRatio int
	// ReplyRatioWindow is the window of MaxReplyRatio. It rolls in tenths:
	// at any moment it holds the current tenth and the nine before it.
	// Zero or negative means DefaultReplyRatioWindow (10 s).
	ReplyRatioWindow time.Duration
	// ReplyAllowance is the reply bytes per window allowed beyond
	// MaxReplyRatio × the request bytes, so that one large answer to a
	// small query (a 4 KiB DNS answer to a 40-byte query is 100x) is not
	// punished. Zero means DefaultReplyAllowance (65,536 bytes, more than
	// any datagram); negative means none.
	ReplyAllowance int
	// Authorize, when set, resolves and authorizes every target before its
	// socket is opened: it returns the one address the tunnel may send to,
	// or an error whose text is sent back in the Error answer. The target is
	// the one requested, in canonical form. The built-in checks (no
	// broadcast, multicast or unspecified address) apply to the address it
	// returns. nil resolves names with the system resolver and allows every
	// target that passes the built-in checks; the agent sets it to its
	// policy.
	Authorize func(ctx context.Context, t target.Target) (netip.Addr, error)
}

func (c DeviceConfig) withDefaults() DeviceConfig {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxPacketsPerSecond == 0 {
		c.MaxPacketsPerSecond = DefaultMaxPacketsPerSecond
	}
	if c.MaxDatagram <= 0 || c.MaxDatagram > MaxFrameData {
		c.MaxDatagram = DefaultMaxDatagram
	}
	if c.MaxReplyRatio == 0 {
		c.MaxReplyRatio = DefaultMaxReplyRatio
	}
	if c.ReplyRatioWindow <= 0 {
		c.ReplyRatioWindow = DefaultReplyRatioWindow
	}
	if c.ReplyAllowance == 0 {
		c.ReplyAllowance = DefaultReplyAllowance
	}
	return c
}

// DeviceStats counts what the tunnels of a Handler did since it was made.
type DeviceStats struct {
	Active  int64 // tunnels open now
	Opened  int64 // tunnels answered OK
	Refused int64 // requests answered with Error
	Expired int64 // tunnels ended by the idle timeout

	DatagramsOut int64 // datagrams sent to targets
	DatagramsIn  int64 // datagrams from targets written to streams

	DroppedRate     int64 // to the target, over MaxPacketsPerSecond
	DroppedTooLarge int64 // either way, longer than MaxDatagram
	DroppedInvalid  int64 // to the target, frames for port 0
	DroppedPort     int64 // to the target, for a port the tunnel may not reach
	DroppedForeign  int64 // from an address other than the target's
	SendErrors      int64 // sends the kernel refused

	ClosedReplyRatio int64 // tunnels ended for reply traffic over MaxReplyRatio
}

type deviceCounters struct {
	active, opened, refused, expired                                     atomic.Int64
	out, in                                                              atomic.Int64
	dropRate, dropTooLarge, dropInvalid, dropPort, dropForeign, sendErrs atomic.Int64
	closedRatio                                                          atomic.Int64
}

// Handler serves UDP tunnel streams (0x11) on a device: register Serve
// with the device runtime for wire.MsgUDP, and Close the Handler on
// shutdown. The zero value is ready to use, with the defaults of
// DeviceConfig.
//
//	h := &udp.Handler{Config: udp.DeviceConfig{Authorize: allow}, Logger: log}
//	dc.Handle(wire.MsgUDP, h.Serve)
//	defer h.Close()
type Handler struct {
	// Config is the configuration the tunnels start with, until SetConfig
	// replaces it. Do not change the field after the first call of a
	// method.
	Config DeviceConfig
	// Logger receives tunnel events; nil discards them.
	Logger *slog.Logger

	initOnce sync.Once
	log      *slog.Logger
	res      resolver
	c        deviceCounters
	wg       sync.WaitGroup // one per Serve call past the closed check

	// ctx ends on Close; every Serve call runs under it.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// mu guards the following.
	cfg     DeviceConfig
	tunnels map[*tunnel]struct{}
	closed  bool
}

func (h *Handler) init() {
	h.initOnce.Do(func() {
		h.log = logx.Or(h.Logger)
		if h.res == nil {
			h.res = net.DefaultResolver
		}
		h.ctx, h.cancel = context.WithCancel(context.Background())
		h.cfg = h.Config.withDefaults()
		h.tunnels = make(map[*tunnel]struct{})
	})
}

// SetConfig replaces the configuration. Tunnels opened from now on use it;
// open tunnels keep the one they started with.
func (h *Handler) SetConfig(cfg DeviceConfig) {
	h.init()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfg = cfg.withDefaults()
}

// Stats returns the handler's counters.
func (h *Handler) Stats() DeviceStats {
	return DeviceStats{
		Active:          h.c.active.Load(),
		Opened:          h.c.opened.Load(),
		Refused:         h.c.refused.Load(),
		Expired:         h.c.expired.Load(),
		DatagramsOut:    h.c.out.Load(),
		DatagramsIn:     h.c.in.Load(),
		DroppedRate:     h.c.dropRate.Load(),
		DroppedTooLarge: h.c.dropTooLarge.Load(),
		DroppedInvalid:  h.c.dropInvalid.Load(),
		DroppedPort:     h.c.dropPort.Load(),
		DroppedForeign:  h.c.dropForeign.Load(),
		SendErrors:      h.c.sendErrs.Load(),

		ClosedReplyRatio: h.c.closedRatio.Load(),
	}
}

// Close ends every tunnel, refuses new ones and waits until every Serve
// call has returned. It is idempotent.
func (h *Handler) Close() error {
	h.init()
	h.mu.Lock()
	h.closed = true
	h.cancel()
	open := make([]*tunnel, 0, len(h.tunnels))
	for t := range h.tunnels {
		open = append(open, t)
	}
	h.mu.Unlock()
	for _, t := range open {
		t.shutdown()
	}
	h.wg.Wait()
	return nil
}

// enter registers a Serve call; it fails once the handler is closed.
func (h *Handler) enter() (DeviceConfig, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return DeviceConfig{}, false
	}
	h.wg.Add(1)
	return h.cfg, true
}

// track adds t, or reports false once the handler is closed.
func (h *Handler) track(t *tunnel) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.tunnels[t] = struct{}{}
	return true
}

func (h *Handler) untrack(t *tunnel) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.tunnels, t)
}

func (h *Handler) refuse(st *transport.Stream, reason string) {
	h.c.refused.Add(1)
	h.log.Info("udp tunnel refused", "reason", reason)
	_ = wire.WriteError(st, reason)
}

// Serve serves one UDP tunnel stream; it is a device.Handler for
// wire.MsgUDP. It answers Error, before sending anything, for a
// malformed request, a target that DeviceConfig.Authorize refuses, or a
// broadcast, multicast or unspecified address; otherwise it binds the
// socket, answers OK and relays datagrams until the stream ends, the
// tunnel idles out, ctx ends or the handler is closed.
func (h *Handler) Serve(ctx context.Context, st *transport.Stream, payload []byte) error {
	h.init()
	cfg, ok := h.enter()
	if !ok {
		h.refuse(st, "UDP tunnels are shutting down on this device; retry after it reconnects")
		return nil
	}
	defer h.wg.Done()
	// Close ends the call too, even while it waits on DNS.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopClose := context.AfterFunc(h.ctx, cancel)
	defer stopClose()

	req, err := ParseRequest(payload)
	if err != nil {
		h.refuse(st, userText(err)+"; want <source port>:<host>:<port>, e.g. 0:127.0.0.1:53")
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	var dst netip.Addr
	if cfg.Authorize != nil {
		dst, err = cfg.Authorize(rctx, req.Target)
		if err != nil {
			cancel()
			h.refuse(st, err.Error()) // the policy's own words
			return nil
		}
		dst = dst.Unmap()
		err = checkDestination(dst)
	} else {
		dst, err = resolveTarget(rctx, h.res, req.Target)
	}
	cancel()
	if errors.Is(err, ErrRefused) {
		h.refuse(st, fmt.Sprintf("udp %s refused: %v", req.Target, err))
		return nil
	}
	if err != nil {
		h.refuse(st, fmt.Sprintf("udp %s: %s", req.Target, userText(err)))
		return nil
	}
	conn, err := listenFor(dst, req.SourcePort)
	if err != nil {
		h.refuse(st, fmt.Sprintf("udp %s: %v", req.Target, err))
		return nil
	}
	t := newTunnel(h, cfg, st, conn, netip.AddrPortFrom(dst, uint16(req.Target.Port)))
	if !h.track(t) {
		conn.Close()
		h.refuse(st, "UDP tunnels are shutting down on this device; retry after it reconnects")
		return nil
	}
	defer h.untrack(t)
	if err := wire.WriteOK(st, nil); err != nil {
		conn.Close()
		h.log.Debug("udp tunnel: answer failed", "target", req.Target.String(), "err", err)
		return nil
	}
	h.c.opened.Add(1)
	h.c.active.Add(1)
	defer h.c.active.Add(-1)
	h.log.Info("udp tunnel open", "target", req.Target.String(), "addr", dst.String(), "local", conn.LocalAddr().String())
	stop := context.AfterFunc(ctx, t.shutdown)
	defer stop()
	reason := t.run()
	h.log.Info("udp tunnel closed", "target", req.Target.String(), "reason", reason,
		"out", t.out.Load(), "in", t.in.Load())
	return nil
}

// tunnel is one open UDP tunnel: a stream and a socket. The handler's
// goroutine runs stream → socket; one goroutine runs socket → stream.
//
// A tunnel sends only to its authorized address and port, and to the
// source ports the target has answered from on it (replies, up to
// maxReplyPorts): socketToStream learns such a port before it relays the
// answer, so the client can never know of a port the tunnel does not.
type tunnel struct {
	h          *Handler
	st         *transport.Stream
	conn       *net.UDPConn
	dst        netip.Addr
	port       uint16 // the authorized port
	idle       time.Duration
	maxData    int
	bucket     ratelimit.Bucket // datagrams to the target; streamToSocket only
	meter      *replyMeter      // nil: no reply cap
	ratio      int
	ratioEvery time.Duration
	start      time.Time

	replies replyPorts   // learned by socketToStream, read by streamToSocket
	last    atomic.Int64 // nanoseconds after start of the last datagram
	out, in atomic.Int64
	idled   atomic.Bool
	capped  atomic.Bool // ended for reply traffic over the cap

	closeOnce sync.Once
	mu        sync.Mutex
	// mu guards the following.
	timer   *time.Timer
	stopped bool
}

func newTunnel(h *Handler, cfg DeviceConfig, st *transport.Stream, conn *net.UDPConn, dst netip.AddrPort) *tunnel {
	now := time.Now()
	return &tunnel{
		h: h, st: st, conn: conn, dst: dst.Addr(), port: dst.Port(),
		idle:       cfg.IdleTimeout,
		maxData:    cfg.MaxDatagram,
		bucket:     packetBucket(cfg.MaxPacketsPerSecond),
		meter:      newReplyMeter(cfg.MaxReplyRatio, cfg.ReplyRatioWindow, cfg.ReplyAllowance, now),
		ratio:      cfg.MaxReplyRatio,
		ratioEvery: cfg.ReplyRatioWindow,
		start:      now,
	}
}

// packetBucket is the bucket of MaxPacketsPerSecond: it holds a tenth of
// a second's worth, at least one; zero or negative means no limit.
func packetBucket(perSecond int) ratelimit.Bucket {
	if perSecond <= 0 {
		return ratelimit.Bucket{}
	}
	return ratelimit.Bucket{Rate: float64(perSecond), Burst: max(float64(perSecond)/10, 1)}
}

// capReason is the close reason of a tunnel past its reply cap.
func (t *tunnel) capReason() string {
	return fmt.Sprintf("reply traffic exceeded %dx the requests over %v", t.ratio, t.ratioEvery)
}

func (t *tunnel) touch() { t.last.Store(int64(time.Since(t.start))) }

// shutdown closes the socket and the stream, which ends both loops. It is
// idempotent and safe from any goroutine.
func (t *tunnel) shutdown() {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.stopped = true
		if t.timer != nil {
			t.timer.Stop()
		}
		t.mu.Unlock()
		t.conn.Close()
		t.st.Close()
	})
}

// checkIdle runs from the idle timer: it ends the tunnel when nothing moved
// for the idle timeout, and re-arms the timer for the rest otherwise.
func (t *tunnel) checkIdle() {
	quiet := time.Since(t.start) - time.Duration(t.last.Load())
	if quiet >= t.idle {
		t.idled.Store(true)
		t.h.c.expired.Add(1)
		t.shutdown()
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.timer.Reset(t.idle - quiet)
	}
}

// run relays until the tunnel ends and returns why it ended.
func (t *tunnel) run() string {
	t.touch()
	t.mu.Lock()
	if !t.stopped {
		t.timer = time.AfterFunc(t.idle, t.checkIdle)
	}
	t.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- t.socketToStream() }()
	errS := t.streamToSocket()
	t.shutdown()
	errU := <-done
	switch {
	case t.capped.Load():
		return t.capReason()
	case t.idled.Load():
		return "idle for " + t.idle.String()
	case errS == nil || errors.Is(errS, io.EOF):
		return "client closed the stream"
	case !transport.IsClosed(errS):
		return errS.Error()
	case errU != nil && !transport.IsClosed(errU):
		return errU.Error()
	}
	return "closed"
}

// streamToSocket sends the client's datagrams to the target until the
// stream ends. A datagram goes only to the authorized port or to a port the
// target has answered from on this tunnel; others are dropped and counted.
func (t *tunnel) streamToSocket() error {
	c := &t.h.c
	fr := newFrameReader(t.st, t.maxData)
	var loggedSendErr, loggedPort bool
	for {
		port, data, err := fr.next()
		if errors.Is(err, ErrDatagramTooLarge) {
			c.dropTooLarge.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		if port == 0 {
			c.dropInvalid.Add(1)
			continue
		}
		if port != t.port && !t.replies.has(port) {
			c.dropPort.Add(1)
			if !loggedPort {
				loggedPort = true
				t.h.log.Warn("udp tunnel: datagram for a port the tunnel may not reach; dropping",
					"to", netip.AddrPortFrom(t.dst, port).String(), "authorized", t.port)
			}
			continue
		}
		now := time.Now()
		if !t.bucket.Allow(now) {
			c.dropRate.Add(1)
			continue
		}
		t.touch()
		// Counted before the send: the answer may be read before the send
		// returns.
		t.meter.request(now, len(data))
		if _, err := t.conn.WriteToUDPAddrPort(data, netip.AddrPortFrom(t.dst, port)); err != nil {
			if transport.IsClosed(err) {
				return err
			}
			c.sendErrs.Add(1)
			if !loggedSendErr {
				loggedSendErr = true
				t.h.log.Warn("udp tunnel: send failed; dropping", "to", netip.AddrPortFrom(t.dst, port).String(), "bytes", len(data), "err", err)
			}
			continue
		}
		c.out.Add(1)
		t.out.Add(1)
	}
}

// socketToStream frames the target's datagrams onto the stream until the
// socket is closed. Datagrams already waiting behind the first one go into
// the same write while they fit the fixed buffer, so a burst costs one
// stream frame rather than one per datagram. Datagrams from other
// addresses are dropped, so a tunnel only ever carries its target's
// answers. A datagram that would pass the reply cap ends the tunnel: what
// came before it is relayed, then a close frame with the reason.
func (t *tunnel) socketToStream() error {
	c := &t.h.c
	// One spare byte tells a datagram longer than maxData from one that fits.
	buf := make([]byte, FrameHeaderSize+t.maxData+1)
	want := t.dst.WithZone("")
	rc, err := t.conn.SyscallConn()
	if err != nil {
		rc = nil
	}
	for {
		used, count, capped := 0, int64(0), false
		for {
			n, from, err := t.conn.ReadFromUDPAddrPort(buf[used+FrameHeaderSize:])
			if err != nil {
				t.shutdown()
				return err
			}
			switch {
			case from.Addr().Unmap().WithZone("") != want:
				c.dropForeign.Add(1)
			case n > t.maxData:
				c.dropTooLarge.Add(1)
			case !t.meter.reply(time.Now(), n):
				capped = true
			default:
				if from.Port() != t.port {
					// Learned before the client can hear of the port.
					t.replies.learn(from.Port())
				}
				putHeader(buf[used:], from.Port(), n)
				used += FrameHeaderSize + n
				count++
			}
			// Take the next datagram now only if it is already there and
			// fits whole, with the spare byte.
			next := pendingSize(rc)
			if capped || next == 0 || used+FrameHeaderSize+next+1 > len(buf) {
				break
			}
		}
		if capped {
			return t.closeCapped(buf[:used], count)
		}
		if used == 0 {
			continue
		}
		t.touch()
		if _, err := t.st.Write(buf[:used]); err != nil {
			t.shutdown()
			return err
		}
		c.in.Add(count)
		t.in.Add(count)
	}
}

// closeCapped ends a tunnel past its reply cap: it relays the datagrams
// framed before the one over the cap, then a close frame with the reason,
// and shuts the tunnel down. The writes are bounded by closeFrameTimeout.
func (t *tunnel) closeCapped(framed []byte, count int64) error {
	t.capped.Store(true)
	t.h.c.closedRatio.Add(1)
	reason := t.capReason()
	t.h.log.Warn("udp tunnel: reply traffic over the cap; closing", "to", netip.AddrPortFrom(t.dst, t.port).String(),
		"reason", reason, "max_reply_ratio", t.ratio, "window", t.ratioEvery.String())
	_ = t.st.SetWriteDeadline(time.Now().Add(closeFrameTimeout))
	if len(framed) > 0 {
		if _, err := t.st.Write(framed); err == nil {
			t.h.c.in.Add(count)
			t.in.Add(count)
		}
	}
	_, err := t.st.Write(appendCloseFrame(nil, reason))
	t.shutdown()
	return err
}

func putHeader(b []byte, port uint16, n int) {
	b[0], b[1] = byte(port>>8), byte(port)
	b[2], b[3] = byte(n>>8), byte(n)
}

// userText is err's text without the package prefix, for an Error answer.
func userText(err error) string {
	return strings.TrimPrefix(err.Error(), "udp: ")
}
