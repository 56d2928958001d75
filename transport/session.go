package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"

	"github.com/xtaci/smux"
)

// Session is one qbee-v1 connection: an smux v2 session over TLS with our
// frame layer beneath it. Streams opened or accepted on it are *Stream,
// whose CloseWrite is lossless.
type Session struct {
	sess *smux.Session
	conn *frameConn
}

// newSession starts smux over c. r, when not nil, supplies bytes that were
// read ahead of c during the upgrade. server selects the smux role.
func newSession(c net.Conn, r io.Reader, server bool, cfg *Config) (*Session, error) {
	if err := VerifyConfig(cfg); err != nil {
		return nil, err
	}
	fc := newFrameConn(c, r, cfg)
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
	fc.attach(s)
	return &Session{sess: s, conn: fc}, nil
}

// NewServerSession runs the edge side of a session over an already upgraded
// connection. Most callers want Upgrade.
func NewServerSession(c net.Conn, cfg *Config) (*Session, error) {
	return newSession(c, nil, true, cfg)
}

// NewClientSession runs the dialer side of a session over an already
// upgraded connection. Most callers want Dial.
func NewClientSession(c net.Conn, cfg *Config) (*Session, error) {
	return newSession(c, nil, false, cfg)
}

// OpenStream opens a new stream. smux bounds the wait for the SYN frame.
func (s *Session) OpenStream() (*Stream, error) {
	st, err := s.sess.OpenStream()
	if err != nil {
		return nil, s.closedErr(err)
	}
	return newStream(st, s.conn), nil
}

// AcceptStream waits for the peer's next stream. It returns ErrSessionClosed
// once the session is closed.
func (s *Session) AcceptStream() (*Stream, error) {
	st, err := s.sess.AcceptStream()
	if err != nil {
		return nil, s.closedErr(err)
	}
	return newStream(st, s.conn), nil
}

func (s *Session) closedErr(err error) error {
	if v := s.conn.violationErr(); v != nil {
		return v
	}
	if s.sess.IsClosed() || errors.Is(err, io.ErrClosedPipe) {
		return ErrSessionClosed
	}
	return err
}

// Err returns why the session was closed by this side's policing (an error
// wrapping ErrProtocolViolation), or nil.
func (s *Session) Err() error { return s.conn.violationErr() }

// Close closes the session and every stream on it. It is idempotent.
func (s *Session) Close() error {
	wasDead := false
	select {
	case <-s.conn.dead:
		wasDead = true // closing a broken connection reports nothing useful
	default:
	}
	err := s.sess.Close()
	if wasDead || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}

// CloseChan is closed when the session is closed: by Close, by a protocol
// violation, or by smux when nothing arrived for KeepAliveTimeout. A
// connection that the peer closed or that broke shows first on ConnDone.
func (s *Session) CloseChan() <-chan struct{} { return s.sess.CloseChan() }

// ConnDone is closed as soon as the connection beneath the session can
// deliver nothing more: the peer closed it, it broke, a violation was
// found, or the session was closed. Streams may still hold bytes that
// arrived before; they stay readable until Close. Owners that track
// liveness (a registry of connected devices) watch ConnDone, read what
// they need, then Close the session.
func (s *Session) ConnDone() <-chan struct{} { return s.conn.dead }

// IsClosed reports whether the session has ended.
func (s *Session) IsClosed() bool { return s.sess.IsClosed() }

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
	*smux.Stream
	conn    *frameConn
	recv    *recvState // nil when the session is already gone
	wclosed atomic.Bool
	written atomic.Int64
}

var _ net.Conn = (*Stream)(nil)

func newStream(st *smux.Stream, c *frameConn) *Stream {
	return &Stream{Stream: st, conn: c, recv: c.pol.state(st.ID())}
}

// Read reads the peer's bytes. It returns io.EOF after the peer's
// CloseWrite or Close, once every byte before it has been read, and
// ErrConnLost when the connection ended before the peer ended the stream
// (smux alone reports that as EOF too).
func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if n > 0 && s.recv != nil {
		s.recv.app.Add(uint32(n))
	}
	if n > 0 && err != nil && s.conn.isWriteErr(err) {
		// smux failed to send the window update after this read: the bytes
		// are good, and the next read tells how the stream ended.
		err = nil
	}
	if err == io.EOF && s.lost() {
		return n, ErrConnLost
	}
	return n, s.mapErr(err)
}

// WriteTo writes the peer's bytes to w until EOF, handing over smux's
// received buffers without another copy. Splice uses it. It returns nil at
// the peer's EOF and ErrConnLost when the connection ended first.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	cw := &consumeWriter{w: w, recv: s.recv}
	var total int64
	for {
		n, err := s.Stream.WriteTo(cw)
		total += n
		if err != nil && cw.err == nil && s.conn.isWriteErr(err) {
			// A window update failed after a buffer was delivered; go on
			// delivering what arrived, until the read side ends.
			continue
		}
		if err == nil && s.lost() {
			return total, ErrConnLost
		}
		return total, s.mapErr(err)
	}
}

// lost reports whether an EOF from smux came from the connection rather
// than from the peer's FIN, which the frame layer notes before smux sees it.
func (s *Stream) lost() bool {
	return s.recv != nil && !s.recv.fin.Load()
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

// Write writes p to the stream. It fails with ErrWriteClosed after CloseWrite.
func (s *Stream) Write(p []byte) (int, error) {
	if s.wclosed.Load() {
		return 0, ErrWriteClosed
	}
	n, err := s.Stream.Write(p)
	s.written.Add(int64(n))
	return n, s.mapErr(err)
}

// mapErr reports a policing violation instead of the closed-pipe error
// smux returns once the session is closed.
func (s *Stream) mapErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	if v := s.conn.violationErr(); v != nil {
		return v
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
	return s.conn.sendFIN(s.ID())
}

// Close closes both directions; unread bytes are discarded. It sends the
// stream's FIN unless CloseWrite already did.
func (s *Stream) Close() error {
	s.wclosed.Store(true)
	err := s.Stream.Close()
	s.conn.forget(s.ID())
	if errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}

// Abort ends the stream in error: the peer reads an error rather than a
// clean EOF where it supports stream resets (see docs/protocol.md), and
// the stream is closed.
func (s *Stream) Abort() error {
	return s.Close()
}

// connContext is done when the session's connection is gone.
func (s *Stream) connContext() context.Context { return s.conn.ctx }

// Written returns the bytes written to the stream so far.
func (s *Stream) Written() int64 { return s.written.Load() }
