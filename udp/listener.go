package udp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// Client-side defaults.
const (
	// DefaultMaxPeers caps the local peers (one stream each) of a Listener.
	DefaultMaxPeers = 64
	// peerQueue and peerQueueBytes bound the datagrams that may wait for
	// one peer's stream; more are dropped and counted, as a congested link
	// would drop them.
	peerQueue      = 256
	peerQueueBytes = 256 << 10
	// batchBytes is where a peer stops adding queued datagrams to one write.
	batchBytes = 64 << 10
	// maxSecondaries caps the secondary sockets of a Listener, so a remote
	// answering from ever new ports cannot exhaust local sockets.
	maxSecondaries = 64
	// socketBuffer is the receive buffer asked for the main socket, so a
	// burst from local peers waits in the kernel rather than being dropped
	// there. The kernel may grant less (net.core.rmem_max).
	socketBuffer = 1 << 20
	// openHoldOff is how long a peer whose stream could not be opened drops
	// its datagrams before the next attempt, so that a refused target is
	// not asked again for every datagram.
	openHoldOff = time.Second
)

// DeviceCloseError says that the device ended a local peer's flow, and
// why. It matches ErrClosedByDevice.
type DeviceCloseError struct {
	Local  net.Addr       // the Listener's main socket
	Peer   netip.AddrPort // the local peer whose flow ended
	Remote string         // the remote, as reached from the device
	// Reason is the device's text, made safe to print: one line of
	// printable UTF-8, at most MaxCloseReason bytes.
	Reason string
}

func (e *DeviceCloseError) Error() string {
	return fmt.Sprintf("udp: flow from %s to %s closed by the device: %s", e.Peer, e.Remote, e.Reason)
}

// Unwrap makes the error match ErrClosedByDevice.
func (e *DeviceCloseError) Unwrap() error { return ErrClosedByDevice }

// ListenerStats counts what a Listener did since it started.
type ListenerStats struct {
	Peers       int // local peers with a stream now
	Secondaries int // secondary sockets open now

	StreamsOpened int64 // streams answered OK
	OpenFailures  int64 // streams refused or failed to open
	DatagramsOut  int64 // local datagrams written to streams
	DatagramsIn   int64 // datagrams from streams sent to local peers
	Dropped       int64 // dropped locally: queue full, too many peers, no stream
	// ClosedByDevice counts flows the device ended with a close frame.
	ClosedByDevice int64
}

type listenerCounters struct {
	opened, openFailed, out, in, dropped, closedByDevice atomic.Int64
}

// Listener forwards the datagrams of local UDP peers through a device to a
// remote address, one stream per local peer (ip:port), as qbee-v1 does.
// Fill in Opener and Remote (and any other field), then Start it; Close
// stops it.
//
//	l := &udp.Listener{Opener: c, Local: "127.0.0.1:5353", Remote: "127.0.0.1:53", Logger: log}
//	if err := l.Start(ctx); err != nil { ... }
//	defer l.Close()
//
// Each stream asks the device to use the peer's port as its source port.
// When the remote service answers from a port other than the one it was
// sent to, the Listener opens a secondary socket on the same local IP (on
// that port when it is free) and sends the answer to the peer from it; what
// the peer sends to that socket goes back to the remote's matching port.
// Streams and secondary sockets are closed after IdleTimeout without
// traffic.
type Listener struct {
	// Opener opens the streams to the device (a *client.Client or a
	// *client.Redialer). Required.
	Opener transport.Opener
	// Local is the address of the main socket, "ip:port"; port 0 picks
	// one (Addr tells which). Empty means "127.0.0.1:0".
	Local string
	// Remote is where the device sends the datagrams, "host:port" as
	// reached from the device. Required.
	Remote string
	// IdleTimeout ends a peer's stream, and closes a secondary socket,
	// after this long without a datagram either way. Zero means
	// DefaultIdleTimeout (60 s).
	IdleTimeout time.Duration
	// MaxPeers caps the local peers served at once, one stream each;
	// datagrams from further peers are dropped and counted. Zero means
	// DefaultMaxPeers (64).
	MaxPeers int
	// Logger receives stream and socket events; nil discards them.
	Logger *slog.Logger
	// OnDeviceClose, when set, is called when the device ends a peer's
	// flow with a close frame, for example because the remote's replies
	// passed the device's reply cap. It runs on the peer's stream reader,
	// so it must return quickly and must not call Close. The peer's next
	// datagram opens a new flow.
	OnDeviceClose func(*DeviceCloseError)

	initOnce sync.Once
	done     chan struct{} // closed when everything stopped (or on Close before Start)

	// Set by Start, read-only afterwards.
	dst      target.Target // Remote, canonical
	conn     *net.UDPConn  // the main socket
	localIP  netip.Addr
	idle     time.Duration
	maxPeers int
	log      *slog.Logger
	c        listenerCounters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // peer, stream-reader and secondary goroutines

	// Each peer has one goroutine (runPeer) that owns its stream and its
	// idle timer. The maps of peers and secondary sockets change only
	// under mu, and expiry is decided under it too, so a datagram is never
	// handed to a peer that is going away.
	mu sync.Mutex
	// mu guards the following.
	started     bool
	peers       map[netip.AddrPort]*peer
	secondaries map[uint16]*secondary // by the remote source port they stand for
	closed      bool
	err         error
	lastOpenErr string
}

func (l *Listener) init() {
	l.initOnce.Do(func() { l.done = make(chan struct{}) })
}

// Start binds Local and forwards what local peers send there to Remote
// through streams opened with Opener, until ctx ends or Close is called.
// It returns an error, having started nothing, for a missing Opener, an
// invalid Local or Remote, a Local it cannot bind, a second call, or a
// call after Close.
func (l *Listener) Start(ctx context.Context) error {
	l.init()
	if l.Opener == nil {
		return errors.New("udp: Listener.Opener is required (a *client.Client or *client.Redialer)")
	}
	t, err := target.Parse(l.Remote)
	if err != nil {
		return fmt.Errorf("udp: remote: %w; want host:port, e.g. 127.0.0.1:53", err)
	}
	if a, err := netip.ParseAddr(t.Host); err == nil {
		if err := checkUnicast(a.Unmap()); err != nil {
			return fmt.Errorf("udp: remote %s refused: %w", t, err)
		}
	}
	local := l.Local
	if local == "" {
		local = "127.0.0.1:0"
	}
	laddr, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		return fmt.Errorf("udp: local address %q: %w; want ip:port, e.g. 127.0.0.1:5353", local, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.started:
		return errors.New("udp: Listener already started; a Listener runs once")
	case l.closed:
		return ErrClosed
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return fmt.Errorf("udp: listen %s: %w; pick a free port or port 0", local, err)
	}
	_ = conn.SetReadBuffer(socketBuffer)
	l.started = true
	l.dst, l.conn, l.localIP = t, conn, conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	l.idle = cmp.Or(max(l.IdleTimeout, 0), DefaultIdleTimeout)
	l.maxPeers = cmp.Or(max(l.MaxPeers, 0), DefaultMaxPeers)
	l.log = logx.Or(l.Logger)
	l.peers = make(map[netip.AddrPort]*peer)
	l.secondaries = make(map[uint16]*secondary)
	l.ctx, l.cancel = context.WithCancel(ctx)
	context.AfterFunc(l.ctx, l.shutdown)
	go l.serve()
	return nil
}

// checkUnicast is the part of checkDestination that does not depend on the
// device's networks.
func checkUnicast(a netip.Addr) error {
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || (a.Is4() && a.As4()[0] == 0) {
		return checkDestination(a)
	}
	return nil
}

// Addr is the local address of the main socket, or nil before Start.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	return l.conn.LocalAddr()
}

// Done is closed when the Listener has stopped and every stream, socket and
// goroutine of it is gone (at once when Close came before Start).
func (l *Listener) Done() <-chan struct{} {
	l.init()
	return l.done
}

// Err returns why the Listener stopped on its own, or nil while it runs and
// after Close or the end of its context.
func (l *Listener) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close closes the sockets and streams and waits until everything stopped.
// It is idempotent; a Listener closed before Start never starts.
func (l *Listener) Close() error {
	l.init()
	l.mu.Lock()
	if !l.started {
		if !l.closed {
			l.closed = true
			close(l.done)
		}
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	l.cancel()
	<-l.done
	return nil
}

// Stats returns the Listener's counters.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	peers, secs := 0, len(l.secondaries)
	for _, p := range l.peers {
		if p.streaming.Load() {
			peers++
		}
	}
	l.mu.Unlock()
	return ListenerStats{
		Peers: peers, Secondaries: secs,
		StreamsOpened: l.c.opened.Load(), OpenFailures: l.c.openFailed.Load(),
		DatagramsOut: l.c.out.Load(), DatagramsIn: l.c.in.Load(), Dropped: l.c.dropped.Load(),
		ClosedByDevice: l.c.closedByDevice.Load(),
	}
}

// shutdown runs once the context ends: it closes every socket, which ends
// the reader loops; peers close their streams on the context. Secondary
// sockets are closed before they leave the map, as on expiry.
func (l *Listener) shutdown() {
	l.mu.Lock()
	l.closed = true
	for _, s := range l.secondaries {
		s.conn.Close()
	}
	clear(l.secondaries)
	l.mu.Unlock()
	l.conn.Close()
}

// serve reads the main socket until it is closed, then waits for the rest.
func (l *Listener) serve() {
	defer close(l.done)
	buf := make([]byte, MaxFrameData+1)
	port := uint16(l.dst.Port)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil && transientReadErr(err) && l.ctx.Err() == nil {
			continue
		}
		if err != nil {
			if l.ctx.Err() == nil {
				l.mu.Lock()
				l.err = fmt.Errorf("udp: read %s: %w", l.conn.LocalAddr(), err)
				l.mu.Unlock()
				l.log.Error("udp listener stopped", "local", l.conn.LocalAddr().String(), "err", err)
			}
			break
		}
		if n > MaxFrameData {
			l.c.dropped.Add(1)
			continue
		}
		l.dispatch(from, port, buf[:n])
	}
	l.cancel()
	l.shutdown()
	l.wg.Wait()
}

// transientReadErr reports read errors that only echo an ICMP error for an
// earlier send to a local peer that went away; the socket itself is fine
// and the Listener goes on.
func transientReadErr(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// datagram is one local datagram waiting for its peer's stream. port is
// the remote port it goes to.
type datagram struct {
	port uint16
	data []byte
}

// peer is one local UDP peer and its stream. Its goroutine (runPeer) owns
// the stream; dispatch hands it datagrams through in.
type peer struct {
	addr      netip.AddrPort
	in        chan datagram
	start     time.Time
	last      atomic.Int64 // nanoseconds after start of the last datagram
	streaming atomic.Bool  // the stream is open
	queued    atomic.Int64 // bytes waiting in in
}

func (p *peer) touch()                    { p.last.Store(int64(time.Since(p.start))) }
func (p *peer) quiet() time.Duration      { return time.Since(p.start) - time.Duration(p.last.Load()) }
func (s *secondary) touch()               { s.last.Store(int64(time.Since(s.start))) }
func (s *secondary) quiet() time.Duration { return time.Since(s.start) - time.Duration(s.last.Load()) }

// dispatch queues a datagram from a local peer for the remote port, making
// the peer and its stream when it is new. It never blocks: a full queue
// drops the datagram.
func (l *Listener) dispatch(from netip.AddrPort, port uint16, data []byte) {
	d := datagram{port: port, data: append([]byte(nil), data...)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	p := l.peers[from]
	if p == nil {
		if len(l.peers) >= l.maxPeers {
			l.c.dropped.Add(1)
			l.log.Debug("udp: too many local peers; dropping", "peer", from.String(), "max", l.maxPeers)
			return
		}
		p = &peer{addr: from, in: make(chan datagram, peerQueue), start: time.Now()}
		l.peers[from] = p
		l.wg.Add(1)
		go l.runPeer(p)
	}
	p.touch()
	if p.queued.Load()+int64(len(d.data)) > peerQueueBytes {
		l.c.dropped.Add(1)
		return
	}
	p.queued.Add(int64(len(d.data)))
	select {
	case p.in <- d:
	default:
		p.queued.Add(-int64(len(d.data)))
		l.c.dropped.Add(1)
	}
}

// removePeerLocked forgets p; after it, dispatch no longer queues to p.
func (l *Listener) removePeerLocked(p *peer) {
	if l.peers[p.addr] == p {
		delete(l.peers, p.addr)
	}
}

// runPeer owns one peer: it opens the stream, writes the peer's datagrams
// to it, and ends it when idle, when the device ends it, or on shutdown.
func (l *Listener) runPeer(p *peer) {
	defer l.wg.Done()
	payload := strconv.Itoa(int(p.addr.Port())) + ":" + l.dst.String()
	st, _, err := l.Opener.OpenStream(l.ctx, wire.MsgUDP, []byte(payload))
	if err != nil {
		l.openFailed(p, err)
		return
	}
	l.c.opened.Add(1)
	p.streaming.Store(true)
	stop := context.AfterFunc(l.ctx, func() { st.Close() })
	l.log.Debug("udp stream open", "peer", p.addr.String(), "remote", l.dst.String())

	readerDone := make(chan error, 1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		readerDone <- l.streamToLocal(p, st)
	}()

	reason := l.pump(p, st, readerDone)

	l.mu.Lock()
	l.removePeerLocked(p)
	l.mu.Unlock()
	p.streaming.Store(false)
	st.Close()
	stop()
	if reason == "" {
		reason = "the device ended the stream"
	} else {
		<-readerDone
	}
	// Datagrams queued after the last write have no stream to go to.
	l.c.dropped.Add(int64(len(p.in)))
	l.log.Debug("udp stream closed", "peer", p.addr.String(), "reason", reason)
}

// pump writes queued datagrams to st until the peer idles out, the stream
// fails, the reader ends or the Listener shuts down. It returns why, or ""
// when it took the reader's end from readerDone.
func (l *Listener) pump(p *peer, st *transport.Stream, readerDone <-chan error) string {
	frame := make([]byte, 0, batchBytes+FrameHeaderSize+MaxFrameData)
	timer := time.NewTimer(l.idle)
	defer timer.Stop()
	for {
		select {
		case d := <-p.in:
			// Frame what is queued into one write, up to batchBytes: one
			// smux write and TLS record for a burst, not one per datagram.
			frame, n := frame[:0], 0
			for {
				p.queued.Add(-int64(len(d.data)))
				frame, _ = AppendFrame(frame, d.port, d.data)
				n++
				if len(frame) >= batchBytes {
					break
				}
				var more bool
				select {
				case d, more = <-p.in:
				default:
				}
				if !more {
					break
				}
			}
			if _, err := st.Write(frame); err != nil {
				l.c.dropped.Add(int64(n))
				if transport.IsClosed(err) {
					return "stream closed"
				}
				return "write: " + err.Error()
			}
			l.c.out.Add(int64(n))
		case <-timer.C:
			// Expiry and dispatch agree under mu: dispatch touches the peer
			// before it queues, so a peer found quiet here has nothing queued
			// and gets nothing more once removed.
			l.mu.Lock()
			q := p.quiet()
			if q >= l.idle && len(p.in) == 0 {
				l.removePeerLocked(p)
				l.mu.Unlock()
				return "idle for " + l.idle.String()
			}
			l.mu.Unlock()
			timer.Reset(max(l.idle-q, time.Millisecond))
		case err := <-readerDone:
			if err != nil && !transport.IsClosed(err) && !errors.Is(err, ErrClosedByDevice) {
				l.log.Warn("udp stream failed", "peer", p.addr.String(), "remote", l.dst.String(), "err", err)
			}
			return ""
		case <-l.ctx.Done():
			return "listener closed"
		}
	}
}

// openFailed handles a stream that could not be opened: it logs the
// reason (once per distinct reason at Warn), drops what the peer sends for
// a short hold-off, then forgets the peer so its next datagram tries again.
func (l *Listener) openFailed(p *peer, err error) {
	l.c.openFailed.Add(1)
	msg := err.Error()
	l.mu.Lock()
	repeated := msg == l.lastOpenErr
	l.lastOpenErr = msg
	l.mu.Unlock()
	if repeated {
		l.log.Debug("udp: cannot open stream", "peer", p.addr.String(), "remote", l.dst.String(), "err", err)
	} else {
		l.log.Warn("udp: cannot open stream; dropping the peer's datagrams", "peer", p.addr.String(), "remote", l.dst.String(), "err", err)
	}
	timer := time.NewTimer(min(openHoldOff, l.idle))
	defer timer.Stop()
	for {
		select {
		case <-p.in:
			l.c.dropped.Add(1)
		case <-timer.C:
			l.mu.Lock()
			l.removePeerLocked(p)
			l.mu.Unlock()
			l.c.dropped.Add(int64(len(p.in)))
			return
		case <-l.ctx.Done():
			return
		}
	}
}

// streamToLocal sends the datagrams the device relays to the peer: from the
// main socket when they come from the remote port, from a secondary socket
// standing for their source port otherwise. A close frame (port 0) ends
// the flow with the device's reason, returned as a *DeviceCloseError.
func (l *Listener) streamToLocal(p *peer, st *transport.Stream) error {
	fr := newFrameReader(st, MaxFrameData)
	main := uint16(l.dst.Port)
	for {
		port, data, err := fr.next()
		if err != nil {
			return err
		}
		p.touch()
		conn := l.conn
		if port == 0 {
			return l.closedByDevice(p, data)
		}
		if port != main {
			s, err := l.secondaryFor(port)
			if err != nil {
				l.c.dropped.Add(1)
				l.log.Warn("udp: no local socket for the remote's source port; dropping", "port", port, "err", err)
				continue
			}
			conn = s.conn
		}
		if _, err := conn.WriteToUDPAddrPort(data, p.addr); err != nil {
			l.c.dropped.Add(1)
			l.log.Debug("udp: send to local peer failed", "peer", p.addr.String(), "err", err)
			continue
		}
		l.c.in.Add(1)
	}
}

// closedByDevice handles the close frame that ended p's flow: it counts,
// logs and reports it, and returns it as an error.
func (l *Listener) closedByDevice(p *peer, data []byte) error {
	e := &DeviceCloseError{Local: l.conn.LocalAddr(), Peer: p.addr, Remote: l.dst.String(), Reason: closeReason(data)}
	l.c.closedByDevice.Add(1)
	l.log.Warn("udp flow closed by the device", "peer", p.addr.String(), "remote", e.Remote, "reason", e.Reason)
	if l.OnDeviceClose != nil {
		l.OnDeviceClose(e)
	}
	return e
}

// secondary is a local socket standing for one source port of the remote
// service. Its goroutine (runSecondary) reads it and closes it when idle.
type secondary struct {
	remotePort uint16
	conn       *net.UDPConn
	start      time.Time
	last       atomic.Int64 // nanoseconds after start of the last datagram
}

// secondaryFor returns the secondary socket for the remote source port,
// opening it on the main socket's IP, on the same port when free.
func (l *Listener) secondaryFor(port uint16) (*secondary, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if s := l.secondaries[port]; s != nil {
		// Touched under mu, so the expiry check cannot close it now.
		s.touch()
		return s, nil
	}
	if len(l.secondaries) >= maxSecondaries {
		return nil, fmt.Errorf("%d secondary sockets are open already; the remote answers from too many ports", maxSecondaries)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.localIP, port)))
	if err != nil {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.localIP, 0)))
		if err != nil {
			return nil, fmt.Errorf("bind %v: %w", l.localIP, err)
		}
	}
	s := &secondary{remotePort: port, conn: conn, start: time.Now()}
	s.touch()
	l.secondaries[port] = s
	l.wg.Add(1)
	go l.runSecondary(s)
	l.log.Debug("udp: secondary socket open", "remote_port", port, "local", conn.LocalAddr().String())
	return s, nil
}

// runSecondary forwards what local peers send to a secondary socket to the
// remote port it stands for, and closes the socket once idle.
func (l *Listener) runSecondary(s *secondary) {
	defer l.wg.Done()
	buf := make([]byte, MaxFrameData+1)
	_ = s.conn.SetReadDeadline(time.Now().Add(l.idle))
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil && transientReadErr(err) {
			continue
		}
		if err != nil {
			// Expiry is decided under mu, where secondaryFor touches the
			// socket it hands out; the socket is closed before it leaves
			// the map, so Stats never counts out a socket still bound.
			reason := err.Error()
			l.mu.Lock()
			if errors.Is(err, os.ErrDeadlineExceeded) && !l.closed {
				if q := s.quiet(); q < l.idle {
					l.mu.Unlock()
					_ = s.conn.SetReadDeadline(time.Now().Add(l.idle - q))
					continue
				}
				reason = "idle"
			}
			s.conn.Close()
			if l.secondaries[s.remotePort] == s {
				delete(l.secondaries, s.remotePort)
			}
			l.mu.Unlock()
			l.log.Debug("udp: secondary socket closed", "remote_port", s.remotePort, "reason", reason)
			return
		}
		if n > MaxFrameData {
			l.c.dropped.Add(1)
			continue
		}
		s.touch()
		l.dispatch(from, s.remotePort, buf[:n])
	}
}
