package transport_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/transport"
)

// tapConn records the smux frames a session writes, as they go into TLS.
type tapConn struct {
	net.Conn
	hold    sync.Mutex   // held while writes must block
	waiting atomic.Int32 // writes waiting on hold
	mu      sync.Mutex
	buf     []byte
	fins    map[uint32]int
	psh     map[uint32]int // payload bytes per stream
}

func newTap(c net.Conn) *tapConn {
	return &tapConn{Conn: c, fins: map[uint32]int{}, psh: map[uint32]int{}}
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.waiting.Add(1)
	c.hold.Lock()
	c.hold.Unlock() // only waits out holdWrites
	c.waiting.Add(-1)
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 8 {
		n := int(binary.LittleEndian.Uint16(c.buf[2:4]))
		if len(c.buf) < 8+n {
			break
		}
		sid := binary.LittleEndian.Uint32(c.buf[4:8])
		switch c.buf[1] {
		case cmdFIN:
			c.fins[sid]++
		case cmdPSH:
			c.psh[sid] += n
		}
		c.buf = c.buf[8+n:]
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// holdWrites blocks the tap's writes, as a connection blocks whose peer
// stopped reading, until release is called.
func (c *tapConn) holdWrites() (release func()) {
	c.hold.Lock()
	return sync.OnceFunc(c.hold.Unlock)
}

func (c *tapConn) finCount(sid uint32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fins[sid]
}

// sessionPair connects a client and a server session over real TLS on
// 127.0.0.1, each writing through a tap.
func sessionPair(t testing.TB, cfg *transport.Config) (cli, srv *transport.Session, cliTap, srvTap *tapConn) {
	t.Helper()
	pki := certstest.New(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		_ = c.(*tls.Conn).Handshake()
		accepted <- c
	}()
	cc, err := tls.Dial("tcp", ln.Addr().String(), pki.ClientTLS())
	require.NoError(t, err)
	sc := <-accepted
	require.NotNil(t, sc)
	cliTap, srvTap = newTap(cc), newTap(sc)
	cli, err = transport.NewClientSession(cliTap, cfg)
	require.NoError(t, err)
	srv, err = transport.NewServerSession(srvTap, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return cli, srv, cliTap, srvTap
}

// TestHalfCloseKeepsUnreadBytes: write, CloseWrite; the peer writes 100 KiB
// and then CloseWrite; only after the peer's FIN has certainly been
// processed does this side read, and every byte arrives.
func TestHalfCloseKeepsUnreadBytes(t *testing.T) {
	cli, srv, _, _ := sessionPair(t, nil)
	const size = 100 << 10

	st, err := cli.Open()
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, st.CloseWrite())

	peerDone := make(chan error, 1)
	go func() {
		ps, err := srv.Accept()
		if err != nil {
			peerDone <- err
			return
		}
		defer ps.Close()
		if _, err := io.ReadAll(ps); err != nil {
			peerDone <- err
			return
		}
		if _, err := ps.Write(pattern(3, size)); err != nil {
			peerDone <- err
			return
		}
		if err := ps.CloseWrite(); err != nil {
			peerDone <- err
			return
		}
		// A stream opened after the FIN: when this side accepts it, its
		// receive loop has already handled the FIN before it.
		barrier, err := srv.Open()
		if err == nil {
			barrier.Close()
		}
		peerDone <- err
	}()
	require.NoError(t, <-peerDone)
	barrier, err := cli.Accept()
	require.NoError(t, err)
	barrier.Close()

	got, err := io.ReadAll(st)
	require.NoError(t, err)
	require.Equal(t, size, len(got), "bytes read after both FINs")
	require.True(t, bytes.Equal(pattern(3, size), got))
	require.Equal(t, 1, cli.NumStreams(), "the stream stays open until Close: smux's half-close clean-up never ran")
}

// TestOneFINPerStream: however CloseWrite and Close are combined, the wire
// carries exactly one FIN per stream from each side.
func TestOneFINPerStream(t *testing.T) {
	cli, srv, cliTap, srvTap := sessionPair(t, nil)
	cases := []struct {
		name string
		end  func(st *transport.Stream)
	}{
		{"close only", func(st *transport.Stream) { st.Close() }},
		{"close write then close", func(st *transport.Stream) { st.CloseWrite(); st.Close() }},
		{"close write twice", func(st *transport.Stream) { st.CloseWrite(); st.CloseWrite(); st.Close() }},
		{"close then close write", func(st *transport.Stream) { st.Close(); st.CloseWrite() }},
		{"close twice", func(st *transport.Stream) { st.Close(); st.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := cli.Open()
			require.NoError(t, err)
			_, err = st.Write([]byte("x"))
			require.NoError(t, err)
			ps, err := srv.Accept()
			require.NoError(t, err)
			_, err = ps.Write([]byte("y"))
			require.NoError(t, err)

			// Each side ends its stream the same way; the server after EOF.
			tc.end(st)
			got, err := io.ReadAll(ps)
			require.NoError(t, err)
			require.Equal(t, "x", string(got))
			tc.end(ps)

			// Close returns once its frame reached the frame layer, so the
			// taps have seen everything each side will send.
			require.Equal(t, 1, cliTap.finCount(st.ID()), "FINs from the client")
			require.Equal(t, 1, srvTap.finCount(ps.ID()), "FINs from the server")
		})
	}
}

// TestNoDataAfterFIN: a write racing with CloseWrite never puts data behind
// the FIN; a write after CloseWrite fails.
func TestWriteAfterCloseWrite(t *testing.T) {
	cli, srv, cliTap, _ := sessionPair(t, nil)
	st, err := cli.Open()
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Write([]byte("abc"))
	require.NoError(t, err)
	require.NoError(t, st.CloseWrite())
	_, err = st.Write([]byte("def"))
	require.ErrorIs(t, err, transport.ErrWriteClosed)
	ps, err := srv.Accept()
	require.NoError(t, err)
	defer ps.Close()
	got, err := io.ReadAll(ps)
	require.NoError(t, err)
	require.Equal(t, "abc", string(got))
	require.Equal(t, 1, cliTap.finCount(st.ID()))
}

// TestDone: when the peer's connection goes away the session says so at
// once, while bytes that arrived before stay readable.
func TestDone(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/device")
	s := us.session(t)
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("last words")), frame(2, cmdFIN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	p.Conn.Close()

	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("Done not closed after the peer hung up")
	}
	got, err := io.ReadAll(st)
	require.NoError(t, err)
	require.Equal(t, "last words", string(got))
	require.NoError(t, s.Close())
	<-s.Done()
}

// TestDoneOnClose: Close alone also closes Done.
func TestDoneOnClose(t *testing.T) {
	cli, _, _, _ := sessionPair(t, nil)
	require.NoError(t, cli.Close())
	<-cli.Done()
	require.NoError(t, cli.Close(), "Close is idempotent")
}

// TestConnLost: a stream cut by the end of the connection reads
// ErrConnLost, not EOF; a stream the peer ended before reads EOF.
func TestConnLost(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/device")
	s := us.session(t)
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("complete")), frame(2, cmdFIN, 3, nil),
		frame(2, cmdSYN, 5, nil), frame(2, cmdPSH, 5, []byte("cut sh")))
	ended, err := s.Accept()
	require.NoError(t, err)
	cut, err := s.Accept()
	require.NoError(t, err)
	p.Conn.Close()
	<-s.Done()

	got, err := io.ReadAll(ended)
	require.NoError(t, err)
	require.Equal(t, "complete", string(got))

	got, err = io.ReadAll(cut)
	require.ErrorIs(t, err, transport.ErrConnLost)
	require.Equal(t, "cut sh", string(got), "what arrived is still delivered")
}

// TestConnLostThroughSplice: Splice reports a connection lost under one
// of its ends instead of treating it as a clean end.
func TestConnLostThroughSplice(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/device")
	s := us.session(t)
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("partial")))
	st, err := s.Accept()
	require.NoError(t, err)
	p.Conn.Close()
	<-s.Done()

	var sink bytes.Buffer
	_, err = st.WriteTo(&sink)
	require.ErrorIs(t, err, transport.ErrConnLost)
	require.Equal(t, "partial", sink.String())
}

// TestSessionCloseAfterFINIsEOF: a stream whose peer wrote and closed its
// writing, on a session whose connection the peer then closes before this
// side closed its own writing, reads every byte and then EOF, by Read and by WriteTo, never a
// closed pipe (smux reports either, at random, for such a stream).
func TestSessionCloseAfterFINIsEOF(t *testing.T) {
	for i := range 40 {
		cli, srv, _, _ := sessionPair(t, nil)
		st, err := cli.Open()
		require.NoError(t, err)
		_, err = st.Write([]byte("q"))
		require.NoError(t, err)
		ps, err := srv.Accept()
		require.NoError(t, err)
		want := pattern(byte(i), 3000+i)
		_, err = ps.Write(want)
		require.NoError(t, err)
		require.NoError(t, ps.CloseWrite())
		// A stream opened after the FIN: once this side accepts it, its
		// receive loop has handled the FIN.
		barrier, err := srv.Open()
		require.NoError(t, err)
		b, err := cli.Accept()
		require.NoError(t, err)
		b.Close()
		barrier.Close()
		// The connection ends from the far side: this session closes
		// under the stream, which has not closed its writing.
		require.NoError(t, srv.Close())
		<-cli.Done()

		var got bytes.Buffer
		if i%2 == 0 {
			_, err = st.WriteTo(&got)
		} else {
			var all []byte
			all, err = io.ReadAll(st)
			got.Write(all)
		}
		require.NoError(t, err, "round %d: the stream ended cleanly before its session closed", i)
		require.Equal(t, want, got.Bytes(), "round %d", i)
		st.Close()
		ps.Close()
	}
}

// TestWriteOnAClosingSessionReturnsAfterItsFrame: smux gives up on a
// frame as soon as the session closes, while its send loop may still be
// writing it. Write must not return before that write is over, or the
// caller's next use of the buffer (smux's WriteTo hands it to another
// session's reads) would go out on the wire.
func TestWriteOnAClosingSessionReturnsAfterItsFrame(t *testing.T) {
	cli, srv, cliTap, _ := sessionPair(t, nil)
	st, _ := openAccepted(t, cli, srv)

	release := cliTap.holdWrites()
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := st.Write(make([]byte, 32<<10))
		done <- err
	}()
	require.Eventually(t, func() bool { return cliTap.waiting.Load() > 0 }, waitLong, time.Millisecond,
		"the send loop did not write the frame")
	go cli.Close()
	select {
	case err := <-done:
		t.Fatalf("Write returned (%v) while the connection was still writing its frame", err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(waitLong):
		t.Fatal("Write did not return once the connection write ended")
	}
}
