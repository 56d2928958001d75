package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

// Session is one qbee-v1 connection: an smux v2 session over TLS with our
// frame layer beneath it. Streams opened or accepted on it are *Stream,
// whose CloseWrite is lossless.
type Session struct {
	sess *smux.Session
	conn *frameConn
	cfg  *Config // with defaults
}

// newSession starts smux over c. r, when not nil, supplies bytes that were
// read ahead of c during the upgrade. server selects the smux role; peer is
// what the other side announced on the upgrade.
func newSession(c net.Conn, r io.Reader, server bool, cfg *Config, peer peerInfo) (*Session, error) {
	if err := VerifyConfig(cfg); err != nil {
		return nil, err
	}
	d := cfg.WithDefaults()
	setUserTimeout(c, d.tcpUserTimeout())
	fc := newFrameConn(c, r, cfg, peer)
	var (
		s   *smux.Session
		err error
	)
	if server {
		s, err = smux.Server(fc, cfg.smuxConfig())
	} else {
		s, err = smux.Client(fc, cfg.smuxConfig())
	}
	if err != nil {
		return nil, err
	}
	fc.attach(s, cfg)
	return &Session{sess: s, conn: fc, cfg: d}, nil
}

// NewServerSession runs the edge side of a session over an already upgraded
// connection. Most callers want Upgrade.
func NewServerSession(c net.Conn, cfg *Config) (*Session, error) {
	return newSession(c, nil, true, cfg, peerInfo{})
}

// NewClientSession runs the dialer side of a session over an already
// upgraded connection. Most callers want Dial.
func NewClientSession(c net.Conn, cfg *Config) (*Session, error) {
	return newSession(c, nil, false, cfg, peerInfo{})
}

// Open opens a new stream, without an opening message: most callers want
// OpenStream. It is OpenContext with a context that never ends: smux
// bounds the wait for the stream's SYN frame to go out, at 30 s.
func (s *Session) Open() (*Stream, error) {
	return s.OpenContext(context.Background())
}

// OpenContext opens a new stream, without an opening message, and returns
// when ctx ends if that comes first. smux waits for its send loop to write
// the stream's SYN frame, up to 30 s, and nothing interrupts that wait.
// So on a connection that has stopped draining (a write to it has not
// ended for a while), the wait runs in a goroutine of its own, which ends
// with smux's, and OpenContext returns ctx's error as ctx ends; a stream
// that opens after that is closed. On a connection that moves, the open
// takes no goroutine.
func (s *Session) OpenContext(ctx context.Context) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ctx.Done() == nil || !s.conn.stalled() {
		return s.open()
	}
	type result struct {
		st  *Stream
		err error
	}
	var (
		mu     sync.Mutex
		gaveUp bool
		done   = make(chan result, 1)
	)
	go func() {
		st, err := s.open()
		mu.Lock()
		defer mu.Unlock()
		if gaveUp {
			if st != nil {
				st.Close()
			}
			return
		}
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		return r.st, r.err
	case <-ctx.Done():
	}
	mu.Lock()
	gaveUp = true
	mu.Unlock()
	select {
	case r := <-done: // the open came as ctx ended
		if r.st != nil {
			r.st.Close()
		}
	default:
	}
	return nil, fmt.Errorf("the connection is not taking data: %w", context.Cause(ctx))
}

// open opens a new stream, waiting as long as smux does.
func (s *Session) open() (*Stream, error) {
	st, err := s.sess.OpenStream()
	if err != nil {
		s.conn.openFailed(err)
		return nil, s.closedErr(err)
	}
	return newStream(st, s.conn), nil
}

// Accept waits for the peer's next stream. It returns ErrSessionClosed
// once the session is closed.
func (s *Session) Accept() (*Stream, error) {
	st, err := s.sess.AcceptStream()
	if err != nil {
		return nil, s.closedErr(err)
	}
	return newStream(st, s.conn), nil
}

func (s *Session) closedErr(err error) error {
	if v := s.conn.closeErr(); v != nil {
		return v
	}
	// A close that waits for the readers of the last bytes (closeSession)
	// has not closed smux's session yet, but this one is closed.
	if s.sess.IsClosed() || s.conn.closing.Load() || errors.Is(err, io.ErrClosedPipe) {
		return ErrSessionClosed
	}
	return err
}

// Err returns why this side closed the session: an error wrapping
// ErrProtocolViolation or ErrKeepAliveTimeout, or nil.
func (s *Session) Err() error { return s.conn.closeErr() }

// Close closes the session and every stream on it. It is idempotent. On a
// connection that is already gone, the streams the application holds keep
// the bytes that arrived before, readable to their end, until each is
// closed (for a few seconds at most). On a live TLS connection of Dial's,
// or of a server's that GatherRecords wrapped, what was written before
// reaches the peer: the connection stays open in the background until the
// peer closes too, for a second at most (see AwaitClosed).
func (s *Session) Close() error {
	wasDead := false
	select {
	case <-s.conn.dead:
		wasDead = true // closing a broken connection reports nothing useful
	default:
	}
	err := s.conn.closeSession(s.sess)
	if wasDead || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}

// Done is closed as soon as the connection is gone: the peer closed it, it
// broke, the peer went silent past the keep-alive timeout, a violation was
// found, or the session was closed. Streams may still hold bytes that
// arrived before; they stay readable until Close.
func (s *Session) Done() <-chan struct{} { return s.conn.dead }

// Context returns a context that is done when Done is closed.
func (s *Session) Context() context.Context { return s.conn.ctx }

// SetPeerName names the peer ("edge edge-2") in the errors of streams cut
// by the loss of the connection, and so in the resets that pass them on.
func (s *Session) SetPeerName(name string) { s.conn.peerName.Store(&name) }

// PeerMaxStreams returns how many streams the peer said it serves at once
// (Tether-Max-Streams on the upgrade), or 0 when it did not say.
func (s *Session) PeerMaxStreams() int { return s.conn.peer.maxStreams }

// NumStreams returns the number of open streams.
func (s *Session) NumStreams() int { return s.sess.NumStreams() }

// LocalAddr returns the local network address.
func (s *Session) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// RemoteAddr returns the peer's network address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// Stream is one smux stream of a Session. It is a net.Conn with a lossless
// CloseWrite: after CloseWrite the peer reads EOF once it has read every byte
// written before, and this side goes on reading the peer's bytes to the last.
type Stream struct {
	st      *smux.Stream
	id      uint32
	conn    *frameConn
	recv    *recvState // nil when the session is already gone
	wclosed atomic.Bool
	closed  atomic.Bool // Close ran
	aborted atomic.Bool // AbortWith sent its reset
	written atomic.Int64
	// wdeadline is the write deadline in Unix nanoseconds; 0 means none.
	wdeadline atomic.Int64
	// wdChanged is closed, and cleared, when the write deadline changes;
	// made by a Write that waits for its turn (deadlineChanged).
	wdChanged atomic.Pointer[chan struct{}]
	// wmu makes Writes take turns, each sent whole; it also guards the
	// count of bytes sent (recvState.sent).
	wmu sync.Mutex
}

var _ net.Conn = (*Stream)(nil)

func newStream(st *smux.Stream, c *frameConn) *Stream {
	c.holdStream()
	s := &Stream{st: st, id: st.ID(), conn: c}
	s.recv = c.pol.bind(st.ID(), s.onViolation)
	return s
}

// onViolation resets the stream after the peer broke the rules on it. The
// policer calls it from the receive loop, so it must not block.
func (s *Stream) onViolation() { go s.Abort() }

// Read reads the peer's bytes. It returns io.EOF after the peer's
// CloseWrite or Close, once every byte before it has been read;
// ErrStreamReset when the peer reset the stream; and ErrConnLost when the
// connection ended before the peer ended the stream (smux alone reports
// both as EOF too). A read past its deadline fails with an error wrapping
// os.ErrDeadlineExceeded.
func (s *Stream) Read(p []byte) (int, error) {
	if err := s.violation(); err != nil {
		return 0, err
	}
	n, err := s.st.Read(p)
	switch {
	case n == 0 && s.closedAfterFIN(err):
		// Read again: what is still buffered, or, at the end, a closed
		// pipe that now means EOF.
		if n, err = s.st.Read(p); n == 0 && errors.Is(err, io.ErrClosedPipe) {
			err = io.EOF
		}
	case n == 0 && err != nil && !isTimeout(err) && s.conn.isDead():
		// smux may report the connection's end before the bytes that
		// came ahead of it (see drainDead): read again, and once nothing
		// is left, the end is what the frame layer saw.
		if n, err = s.st.Read(p); n == 0 && err != nil && !isTimeout(err) {
			err = io.EOF
		}
	}
	if n > 0 && s.recv != nil {
		s.recv.app.Add(uint32(n))
	}
	if n > 0 && err != nil && s.conn.isWriteErr(err) {
		// smux failed to send the window update after this read: the bytes
		// are good, and the next read tells how the stream ended.
		err = nil
	}
	if err == io.EOF {
		if e := s.endErr(); e != nil {
			return n, e
		}
	}
	return n, s.mapErr(err)
}

// WriteTo writes the peer's bytes to w until EOF, handing over smux's
// received buffers without another copy. Splice uses it. It returns nil at
// the peer's EOF, and ErrStreamReset or ErrConnLost when the stream did not
// end cleanly.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	if err := s.violation(); err != nil {
		return 0, err
	}
	cw := &consumeWriter{w: w, recv: s.recv}
	var total int64
	for {
		n, err := s.st.WriteTo(cw)
		total += n
		if err != nil && cw.err == nil && s.conn.isWriteErr(err) {
			// A window update failed after a buffer was delivered; go on
			// delivering what arrived, until the read side ends.
			continue
		}
		if cw.err == nil && !isTimeout(err) && s.conn.isDead() {
			// smux may report the connection's end before the bytes
			// that came ahead of it: deliver them.
			n, err = s.drainDead(cw)
			total += n
			switch v := s.violation(); {
			case v != nil:
				return total, v
			case cw.err == nil:
				return total, s.endErr()
			}
			return total, s.mapErr(err)
		}
		if err == nil {
			return total, s.endErr()
		}
		if s.closedAfterFIN(err) && cw.err == nil {
			// Deliver what is still buffered; a closed pipe after it is
			// the end.
			n, err = s.st.WriteTo(cw)
			total += n
			if err == nil || errors.Is(err, io.ErrClosedPipe) && cw.err == nil {
				return total, s.endErr()
			}
		}
		return total, s.mapErr(err)
	}
}

// drainDead writes to cw what smux still holds of a stream whose
// connection is gone. smux's reader, woken by several events at once,
// picks one at random: the connection's end (its read error, io.EOF when
// the peer closed cleanly) can win over bytes and a FIN that arrived
// before it, and smux then reports the stream ended (WriteTo) or failed
// (Read) with those bytes still buffered. Nothing arrives on a dead
// connection any more, so one more pass takes everything.
func (s *Stream) drainDead(cw *consumeWriter) (int64, error) {
	return s.st.WriteTo(cw)
}

// closedAfterFIN reports whether err, from smux, is the closed pipe of a
// stream whose session closed after the peer's FIN (or reset) arrived.
// smux reports such a stream as closed rather than ended unless this side
// had closed its writing too, and picks between the two at random when
// both happened: the stream ended, and every byte before the FIN is
// still readable.
func (s *Stream) closedAfterFIN(err error) bool {
	return errors.Is(err, io.ErrClosedPipe) && s.recv != nil && s.recv.fin.Load()
}

// endErr says why an EOF from smux is not a clean end: the peer reset the
// stream, or the connection ended first (which the frame layer tells from
// the peer's FIN, noted before smux sees it). nil for a clean end. A reset
// that follows the peer's FIN does not undo it: every byte was sent, and
// the reset only refuses what this side writes next (as QUIC's
// RESET_STREAM may be ignored once all data has arrived).
func (s *Stream) endErr() error {
	switch {
	case s.recv == nil:
		return nil
	case s.recv.reset.Load() && !s.recv.ended.Load():
		return s.resetErr()
	case !s.recv.fin.Load():
		if err := s.conn.closeErr(); err != nil {
			return err
		}
		return s.conn.lostErr()
	}
	return nil
}

// violation returns why this side reset the stream, or nil.
func (s *Stream) violation() error {
	if s.recv == nil {
		return nil
	}
	if p := s.recv.violation.Load(); p != nil {
		return *p
	}
	return nil
}

// consumeWriter reports every buffer written as read by the application.
type consumeWriter struct {
	w    io.Writer
	recv *recvState
	err  error // of the last write to w
}

func (c *consumeWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if c.recv != nil {
		c.recv.app.Add(uint32(len(p)))
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	c.err = err
	return n, err
}

// Write writes p to the stream. It fails with ErrWriteClosed after
// CloseWrite and with ErrStreamReset once the peer reset the stream; when
// the peer had ended the stream (FIN) before it reset it, as a command
// that exits with input still on its way, the error matches
// ErrStoppedReading too: a normal end for the peer, whose output is
// whole.
//
// Each data frame goes to the connection from the caller's goroutine, as
// the peer's window allows: when Write returns, the bytes it counts are on
// their way and no others will follow, and p is no longer read. Past the
// write deadline, waiting for the window fails with an error wrapping
// os.ErrDeadlineExceeded; a frame already going to the connection is
// finished first, however long the connection takes. Concurrent Writes
// take turns, each sent whole.
func (s *Stream) Write(p []byte) (int, error) {
	if s.wclosed.Load() {
		return 0, ErrWriteClosed
	}
	if s.recv != nil && s.recv.reset.Load() {
		return 0, s.resetErr()
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if d := s.wdeadline.Load(); d != 0 && len(p) > 0 && time.Now().UnixNano() >= d {
		return 0, os.ErrDeadlineExceeded
	}
	if s.recv == nil {
		// The session was gone before the stream was handed out: smux
		// reports how.
		n, err := s.st.Write(p)
		s.written.Add(int64(n))
		if err != nil {
			s.conn.fenceClosed()
		}
		return n, s.mapErr(err)
	}
	sent := 0
	turn := turnWait{s: s}
	defer turn.stop()
	for len(p) > 0 {
		room, err := s.sendWindow()
		if err != nil {
			return sent, err
		}
		k := min(len(p), room, s.conn.frameSize)
		n, err := s.conn.writeData(s.id, p[:k], turn.next)
		s.recv.sent += uint32(n)
		s.written.Add(int64(n))
		sent += n
		if err != nil {
			if e := s.sendState(); e != nil {
				err = e
			}
			return sent, err
		}
		p = p[k:]
	}
	return sent, nil
}

// sendWindow waits until the peer's window for this stream has room, and
// returns how much (at most a frame). It fails once the stream can send
// no more (sendState), or past the write deadline. smux keeps its own
// account of the window from the same updates; it is not used.
func (s *Stream) sendWindow() (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := s.sendState(); err != nil {
			return 0, err
		}
		// The waiter first: an update after the window is read closes it.
		wake := s.conn.pol.sendWaiter(s.recv)
		w := s.recv.peerWin.Load()
		consumed, window := uint32(w>>32), uint32(w)
		inflight := int32(s.recv.sent - consumed)
		if inflight < 0 {
			err := fmt.Errorf("%w: the peer acknowledged %d bytes of stream %d that were never sent", ErrProtocolViolation, -int64(inflight), s.id)
			s.conn.fail(err)
			return 0, err
		}
		if room := int64(window) - int64(inflight); room > 0 {
			return int(min(room, int64(s.conn.frameSize))), nil
		}
		var expired <-chan time.Time
		if d := s.wdeadline.Load(); d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(left)
			} else {
				timer.Reset(left)
			}
			expired = timer.C
		}
		select {
		case <-wake:
		case <-expired:
		case <-s.conn.dead:
		}
	}
}

// turnWait bounds a Write's wait for its turn to write a frame (others
// may be writing, on a connection that does not drain) by the write
// deadline, as it stands while the Write waits.
type turnWait struct {
	s     *Stream
	timer *time.Timer
}

// next reports whether the Write may wait on (false once the deadline
// has passed), and what wakes it to look again: a new deadline, or the
// deadline itself.
func (w *turnWait) next() (<-chan struct{}, <-chan time.Time, bool) {
	wake := w.s.deadlineChanged() // before the deadline: a change after it closes wake
	d := w.s.wdeadline.Load()
	if d == 0 {
		return wake, nil, true
	}
	left := time.Until(time.Unix(0, d))
	if left <= 0 {
		return nil, nil, false
	}
	if w.timer == nil {
		w.timer = time.NewTimer(left)
	} else {
		w.timer.Reset(left)
	}
	return wake, w.timer.C, true
}

func (w *turnWait) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

// deadlineChanged returns a channel that the next change of the write
// deadline closes.
func (s *Stream) deadlineChanged() <-chan struct{} {
	for {
		if ch := s.wdChanged.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if s.wdChanged.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// sendState returns why the stream can send no more, or nil: it was
// closed, the peer reset it, this side reset it for a violation, or its
// session ended.
func (s *Stream) sendState() error {
	switch {
	case s.closed.Load():
		return io.ErrClosedPipe
	case s.recv.reset.Load():
		return s.resetErr()
	}
	if v := s.violation(); v != nil {
		return v
	}
	if v := s.conn.closeErr(); v != nil {
		return v
	}
	if s.conn.isDead() {
		if s.conn.closing.Load() {
			return ErrSessionClosed
		}
		return s.conn.lostErr()
	}
	return nil
}

// mapErr reports a policing violation or a session-ending reason instead of
// the closed-pipe error smux returns once the session is closed, a reset
// instead of the deadline that woke a blocked writer, and wraps
// os.ErrDeadlineExceeded for a deadline, as net.Conn requires.
func (s *Stream) mapErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	if v := s.violation(); v != nil {
		return v
	}
	if v := s.conn.closeErr(); v != nil {
		return v
	}
	if errors.Is(err, smux.ErrTimeout) {
		if s.recv != nil && s.recv.reset.Load() {
			return s.resetErr()
		}
		return os.ErrDeadlineExceeded
	}
	return err
}

// CloseWrite ends this side's writing. The peer reads EOF after every byte
// written before; reading from this side goes on until the peer's EOF.
// The FIN goes out from the frame layer, so smux's own half-close (which
// some releases use to discard unread bytes) never runs. Call it after the
// last Write has returned: bytes of a Write that races with it may be
// dropped rather than sent after the FIN.
func (s *Stream) CloseWrite() error {
	if s.wclosed.Swap(true) {
		return nil
	}
	return s.conn.sendEnd(smuxCmdFIN, s.id, "")
}

// Abort ends the stream in error and closes it. A peer that supports
// stream resets (ours do; see docs/protocol.md, "Stream reset") reads an
// error wrapping ErrStreamReset rather than a clean EOF, and its writes
// fail; other peers see the stream end as after Close, since qbee-v1 has
// no reset.
func (s *Stream) Abort() error { return s.AbortWith("") }

// AbortWith is Abort with a reason the peer's reads report, such as "lost
// the connection to edge edge-2". It is cut to MaxResetReason bytes.
func (s *Stream) AbortWith(reason string) error {
	if s.conn.peer.reset && (s.recv == nil || !s.recv.reset.Load()) && !s.aborted.Swap(true) {
		_ = s.conn.sendEnd(cmdRST, s.id, cutReason(reason))
	}
	return s.Close()
}

// resetErr is the error of a stream the peer reset. A reset that came
// after the peer's FIN also matches ErrStoppedReading: the peer finished
// and refuses only what this side still writes.
func (s *Stream) resetErr() error {
	e := &ResetError{}
	if r := s.recv.reason.Load(); r != nil {
		e.Reason = *r
	}
	if s.recv.ended.Load() {
		return stoppedReading{e}
	}
	return e
}

// cutReason shortens a reason to MaxResetReason bytes at a rune boundary.
func cutReason(s string) string {
	if len(s) <= MaxResetReason {
		return s
	}
	cut := MaxResetReason
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}

// Close closes both directions; unread bytes are discarded. It sends the
// stream's FIN unless CloseWrite or Abort already ended it. Where the peer
// supports resets, a peer that is still sending learns that nobody reads,
// as from a TCP socket closed with unread data: a reset follows the FIN at
// once when bytes it sent were left unread, or else answers the next data
// it sends. Either way the FIN went first, so the peer still reads every
// byte this side wrote; only its writes fail.
func (s *Stream) Close() error {
	s.wclosed.Store(true)
	err := s.st.Close()
	if !s.closed.Swap(true) {
		if s.conn.forget(s.id) && s.conn.peer.reset && !s.aborted.Swap(true) {
			s.conn.sendClosedReset(s.id)
		}
		defer s.conn.releaseStream()
	}
	if errors.Is(err, io.ErrClosedPipe) || s.conn.isDead() {
		return nil // the FIN has nowhere to go, and the stream is closed
	}
	return err
}

// peerEnded reports whether the peer's FIN arrived before any reset: every
// byte it sent is here.
func (s *Stream) peerEnded() bool { return s.recv != nil && s.recv.ended.Load() }

// finished reports whether both directions have ended: the peer's FIN
// arrived and this side closed its writing.
func (s *Stream) finished() bool {
	return s.wclosed.Load() && s.recv != nil && s.recv.fin.Load()
}

// ID returns the stream's smux ID: odd for streams the dialer opened, even
// for the edge's. It names the stream in logs and on the wire.
func (s *Stream) ID() uint32 { return s.id }

// SetDeadline sets the read and write deadlines, as net.Conn does.
func (s *Stream) SetDeadline(t time.Time) error {
	s.storeWriteDeadline(t)
	return s.st.SetDeadline(t)
}

// ReadArrived reads into p the bytes that have already arrived, without
// waiting for more, and returns how many; 0 when none are there or the
// stream has ended. It clears the read deadline. It is how the answering
// side takes an optimistic opener's first bytes: when it returns some,
// the stream's next write, the answer, goes out with the frame that
// follows it (the reply's first bytes), or alone after a millisecond.
func (s *Stream) ReadArrived(p []byte) int {
	_ = s.SetReadDeadline(time.Unix(1, 0)) // passed: read only what is there
	n, _ := s.Read(p)
	_ = s.SetReadDeadline(time.Time{})
	if n > 0 {
		s.conn.holdAnswer(s.id)
	}
	return n
}

// SetReadDeadline sets the read deadline, as net.Conn does: a Read past it
// fails with an error wrapping os.ErrDeadlineExceeded.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.st.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline, as net.Conn does. It also
// bounds a Write already waiting, for the peer's window or for its turn on
// a connection that other streams' frames hold up. A frame whose write has
// begun goes out whole: the connection's user timeout and the keep-alive
// bound that.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.storeWriteDeadline(t)
	return s.st.SetWriteDeadline(t)
}

// storeWriteDeadline sets the deadline of Write, and wakes a Write
// waiting for the window to heed it.
func (s *Stream) storeWriteDeadline(t time.Time) {
	if t.IsZero() {
		s.wdeadline.Store(0)
	} else {
		s.wdeadline.Store(max(t.UnixNano(), 1))
	}
	if ch := s.wdChanged.Swap(nil); ch != nil {
		close(*ch)
	}
	if s.recv != nil {
		s.conn.pol.wakeSender(s.recv)
	}
}

// LocalAddr returns this side's address of the session's connection: every
// stream of a session shares it.
func (s *Stream) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// RemoteAddr returns the address of the session's peer as this side sees
// it: the edge for a client or device, the client's or device's (or the
// address of a proxy in front of the edge) for the edge. It is not the
// address of the target the stream reaches; every stream of a session
// shares it.
func (s *Stream) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// lostErr is the error of this stream when its connection is lost.
func (s *Stream) lostErr() error { return s.conn.lostErr() }

// connContext is done when the session's connection is gone.
func (s *Stream) connContext() context.Context { return s.conn.ctx }

// Written returns the bytes written to the stream so far.
func (s *Stream) Written() int64 { return s.written.Load() }
