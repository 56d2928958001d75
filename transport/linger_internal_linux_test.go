package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tetherhq/tether/certs/certstest"
)

// pausedConn is a connection whose reads can be held: a process too busy
// to read its socket.
type pausedConn struct {
	net.Conn
	mu      sync.Mutex
	held    bool
	waiting int // reads held
	resume  *sync.Cond
}

func newPausedConn(c net.Conn) *pausedConn {
	p := &pausedConn{Conn: c}
	p.resume = sync.NewCond(&p.mu)
	return p
}

func (p *pausedConn) hold(h bool) {
	p.mu.Lock()
	p.held = h
	p.mu.Unlock()
	p.resume.Broadcast()
}

func (p *pausedConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	for p.held {
		p.waiting++
		p.resume.Wait()
		p.waiting--
	}
	p.mu.Unlock()
	return p.Conn.Read(b)
}

// holding reports whether a read waits for hold(false).
func (p *pausedConn) holding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting > 0
}

func (p *pausedConn) CloseWrite() error { return p.Conn.(*net.TCPConn).CloseWrite() }

// inQueue is how many received bytes c's socket holds unread.
func inQueue(t *testing.T, c *net.TCPConn) int { return sockQueue(t, c, unix.SIOCINQ) }

// unsent is how many bytes c's socket holds that it has not sent yet.
func unsent(t *testing.T, c *net.TCPConn) int { return sockQueue(t, c, unix.SIOCOUTQNSD) }

func sockQueue(t *testing.T, c *net.TCPConn, req uint) int {
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var n int
	require.NoError(t, rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), req) }))
	require.NoError(t, err)
	return n
}

// TestSessionCloseDeliversTheLastBytes: a session closed right after its
// stream's last write, while its peer is slow to read and has just sent
// something this side has not read, must still deliver every byte and
// the stream's end. A plain close of the socket would have the kernel
// reset the connection and drop what it had not sent yet.
//
// Not parallel: AwaitClosed waits for every lingering connection, and
// other tests' would keep it waiting.
func TestSessionCloseDeliversTheLastBytes(t *testing.T) {
	pki := certstest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg := &Config{KeepAliveInterval: time.Minute, KeepAliveTimeout: 2 * time.Minute}

	type accepted struct {
		sess *Session
		raw  *pausedConn
		err  error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		// A small receive buffer: what the other side sends piles up in
		// its own socket while this side does not read.
		_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
		raw := newPausedConn(c)
		tc := tls.Server(raw, pki.EdgeTLS())
		if err := tc.HandshakeContext(context.Background()); err != nil {
			acc <- accepted{err: err}
			return
		}
		s, err := newSession(tc, nil, true, cfg, peerInfo{reset: true})
		acc <- accepted{s, raw, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	tcp := c.(*net.TCPConn)
	require.NoError(t, tcp.SetWriteBuffer(1<<20))
	raw := newPausedConn(tcp)
	conf := pki.ClientTLS()
	conf.ServerName = "127.0.0.1"
	tc := tls.Client(GatherRecords(raw), conf)
	require.NoError(t, tc.HandshakeContext(context.Background()))
	closer, err := newSession(tc, nil, false, cfg, peerInfo{reset: true})
	require.NoError(t, err)
	defer closer.Close()
	a := <-acc
	require.NoError(t, a.err)
	peer := a.sess
	defer peer.Close()

	st, err := closer.Open()
	require.NoError(t, err)
	pst, err := peer.Accept()
	require.NoError(t, err)
	defer pst.Close()
	// The peer's first read announces its whole window.
	_, err = st.Write([]byte("hello"))
	require.NoError(t, err)
	_, err = io.ReadFull(pst, make([]byte, 5))
	require.NoError(t, err)

	// The peer stops reading its socket; this side stops reading its own,
	// with something of the peer's in it.
	a.raw.hold(true)
	raw.hold(true)
	defer func() {
		raw.hold(false)
		a.raw.hold(false)
	}()
	// A read under way when the hold began takes what comes first.
	require.Eventually(t, func() bool {
		if raw.holding() {
			return true
		}
		_, _ = pst.Write([]byte("x"))
		return false
	}, 20*time.Second, 10*time.Millisecond, "this side's reader never came back for more")
	_, err = pst.Write([]byte("y"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return inQueue(t, tcp) > 0 }, 20*time.Second, 5*time.Millisecond, "the peer's bytes never arrived")

	// More than the peer's socket takes: the rest waits in this side's.
	data := bytes.Repeat([]byte("0123456789abcdef"), (256<<10)/16)
	_, err = st.Write(data)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.Positive(t, unsent(t, tcp), "the test needs bytes still unsent when the session closes")
	require.NoError(t, closer.Close())
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, AwaitClosed(short), context.DeadlineExceeded, "the connection was let go before the peer read")
	raw.hold(false)
	a.raw.hold(false)

	require.NoError(t, pst.SetReadDeadline(time.Now().Add(20*time.Second)))
	got, err := io.ReadAll(pst)
	require.NoError(t, err, "the stream did not end cleanly")
	require.Equal(t, len(data), len(got), "bytes of the stream lost")
	require.True(t, bytes.Equal(data, got))
	require.NoError(t, peer.Close())
	long, cancelLong := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelLong()
	require.NoError(t, AwaitClosed(long), "the lingering connection was not let go")
}
