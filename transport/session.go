package transport

import (
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
	fc := newFrameConn(c, r)
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
	if s.sess.IsClosed() || errors.Is(err, io.ErrClosedPipe) {
		return ErrSessionClosed
	}
	return err
}

// Close closes the session and every stream on it. It is idempotent.
func (s *Session) Close() error {
	err := s.sess.Close()
	if errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}

// CloseChan is closed when the session ends.
func (s *Session) CloseChan() <-chan struct{} { return s.sess.CloseChan() }

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
	wclosed atomic.Bool
	written atomic.Int64
}

var _ net.Conn = (*Stream)(nil)

func newStream(st *smux.Stream, c *frameConn) *Stream {
	return &Stream{Stream: st, conn: c}
}

// Write writes p to the stream. It fails with ErrWriteClosed after CloseWrite.
func (s *Stream) Write(p []byte) (int, error) {
	if s.wclosed.Load() {
		return 0, ErrWriteClosed
	}
	n, err := s.Stream.Write(p)
	s.written.Add(int64(n))
	return n, err
}

// CloseWrite ends this side's writing. The peer reads EOF after every byte
// written before; reading from this side goes on until the peer's EOF.
func (s *Stream) CloseWrite() error {
	if s.wclosed.Swap(true) {
		return nil
	}
	return s.conn.sendFIN(s.ID())
}

// Written returns the bytes written to the stream so far.
func (s *Stream) Written() int64 { return s.written.Load() }
