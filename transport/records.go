package transport

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// GatherRecords wraps c, the connection under a TLS connection that will
// carry a session, so that the session writes a large frame to the socket
// at once. crypto/tls writes each record, of at most 16 KiB, with its own
// write: a 64 KiB frame would cost four system calls and reach the peer
// in four pieces, each waking its reader. Dial does this for its own
// connections; a server passes what its listener accepted through
// GatherRecords before tls.Server. Other writes pass straight through.
func GatherRecords(c net.Conn) net.Conn {
	return &recordConn{Conn: c, raw: rawSocketOf(c)}
}

// recordConn gathers the writes made between gather and flush.
type recordConn struct {
	net.Conn
	raw *rawSocket // reads and writes c's socket, when not nil (rawio_linux.go)

	mu sync.Mutex
	// mu guards the following.
	gathering bool
	buf       *[]byte // from recordBufs while gathering

	flushing atomic.Bool // a flush is writing to the socket
	closing  atomic.Bool // the connection is being closed: flush writes no more
	linger   atomic.Bool // Close lingers (lingerOnClose)
}

// A socket closed with bytes in it that the application has not read makes
// the kernel reset the connection, and throw away what it has not sent
// yet. On a session closed on purpose right after its last stream's last
// write, with a window update or a keep-alive of the peer's just come in,
// that cut the end off the stream whenever the peer was slow to read. So
// such a close lingers, as a web server's does: the writing side is shut
// (what was sent goes out, then the FIN), and the socket stays open,
// anything more the peer sends read and dropped, until the peer closes too
// or for lingerFor at most; lingerMax bounds the bytes read meanwhile.
const (
	lingerFor = time.Second
	lingerMax = 8 << 20
)

// recordBufs holds the buffers of frames being gathered: a frame's
// records and their overhead.
var recordBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 72<<10)
	return &b
}}

// NetConn returns the wrapped connection.
func (c *recordConn) NetConn() net.Conn { return c.Conn }

func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gathering {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	return c.write(p)
}

func (c *recordConn) Read(p []byte) (int, error) {
	if c.raw != nil {
		return c.raw.Read(p)
	}
	return c.Conn.Read(p)
}

// write writes p to the socket.
func (c *recordConn) write(p []byte) (int, error) {
	if c.raw != nil {
		return c.raw.Write(p)
	}
	return c.Conn.Write(p)
}

// lingerOnClose makes Close linger (see lingerFor): the session is being
// closed on purpose, with the connection still up.
func (c *recordConn) lingerOnClose() { c.linger.Store(true) }

// Close closes the connection, at once or, after lingerOnClose, once the
// peer has taken what was sent (see lingerFor), by a goroutine of its own.
func (c *recordConn) Close() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || !c.linger.Swap(false) || c.flushing.Load() {
		return c.Conn.Close()
	}
	if err := cw.CloseWrite(); err != nil {
		return c.Conn.Close()
	}
	if err := c.Conn.SetReadDeadline(time.Now().Add(lingerFor)); err != nil {
		return c.Conn.Close()
	}
	lingering.begin()
	go func() {
		defer lingering.end()
		_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, lingerMax))
		_ = c.Conn.Close()
	}()
	return nil
}

// lingering counts the connections that linger after their close.
var lingering lingerCount

type lingerCount struct {
	mu sync.Mutex
	// mu guards the following.
	n    int
	idle chan struct{} // closed once n is back to 0
}

func (l *lingerCount) begin() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		l.idle = make(chan struct{})
	}
	l.n++
}

func (l *lingerCount) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n--; l.n == 0 {
		close(l.idle)
	}
}

// AwaitClosed waits until the connections of the sessions closed on
// purpose are let go: each peer has taken the last bytes and closed too,
// or the second that a close lingers for has passed (see Session.Close);
// or until ctx ends, with its error. A process calls it after closing its
// sessions and before it exits: the kernel would otherwise reset those
// connections, and drop what they had not sent yet.
func AwaitClosed(ctx context.Context) error {
	lingering.mu.Lock()
	n, idle := lingering.n, lingering.idle
	lingering.mu.Unlock()
	if n == 0 {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gather holds the writes that follow until flush.
func (c *recordConn) gather() {
	c.mu.Lock()
	c.gathering = true
	c.buf = recordBufs.Get().(*[]byte)
	c.mu.Unlock()
}

// flush writes what was gathered, in one write, and ends gathering.
func (c *recordConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gathering {
		return nil
	}
	c.gathering = false
	var err error
	c.flushing.Store(true)
	switch {
	case c.closing.Load():
		err = net.ErrClosed
	case len(*c.buf) > 0:
		_, err = c.write(*c.buf)
	}
	c.flushing.Store(false)
	*c.buf = (*c.buf)[:0]
	recordBufs.Put(c.buf)
	c.buf = nil
	return err
}

// abortFlush is called before the TLS connection above is closed. A
// flush that is writing, perhaps stuck on a peer that stopped reading,
// ends at once: the socket is closed under it, as crypto/tls closes the
// socket when a write of its own is in flight. Otherwise the TLS close
// would wait for the flush, up to the five seconds it allows its alert.
func (c *recordConn) abortFlush() {
	c.closing.Store(true)
	if c.flushing.Load() {
		_ = c.Conn.Close()
	}
}

// recordsUnder returns the recordConn under c (a TLS connection, or a
// wrapper of one with a NetConn method), or nil.
func recordsUnder(c net.Conn) *recordConn {
	for {
		if rc, ok := c.(*recordConn); ok {
			return rc
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = w.NetConn()
	}
}
