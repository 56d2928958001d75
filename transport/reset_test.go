package transport_test

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// TestLostDeviceLegIsAnErrorForTheClient: the device's connection dies in
// the middle of a download. The client must read an error, never an EOF
// that would make a truncated download look complete.
func TestLostDeviceLegIsAnErrorForTheClient(t *testing.T) {
	b := testbroker.New(t, nil)
	dev := b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, nil)
	// The target sends forever; the client reads a little, then the
	// device goes away.
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	conn, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, []byte(target))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.ReadFull(conn, make([]byte, 100_000))
	require.NoError(t, err)

	require.NoError(t, dev.Close())
	_ = conn.SetReadDeadline(time.Now().Add(waitLong))
	_, err = io.Copy(io.Discard, conn)
	require.ErrorIs(t, err, transport.ErrStreamReset, "the client must not see a clean end")
}

// TestLostClientLegResetsTheTarget: the client's connection dies in the
// middle of an upload. The device's target must see a TCP reset, not a FIN
// that means the upload is complete.
func TestLostClientLegResetsTheTarget(t *testing.T) {
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, nil)
	ended := make(chan error, 1)
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		_, err := io.Copy(io.Discard, c)
		ended <- err
	})
	conn, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, []byte(target))
	require.NoError(t, err)
	_, err = conn.Write(make([]byte, 100_000))
	require.NoError(t, err)

	require.NoError(t, cl.Close())
	select {
	case err := <-ended:
		require.ErrorIs(t, err, syscall.ECONNRESET, "the target read a clean EOF")
	case <-time.After(waitLong):
		t.Fatal("the target's connection stayed open")
	}
}

// TestResetOnlyForPeersThatAnnounceIt: a qbee-v1 peer, which announces no
// extension, never receives the RST frame it would not understand; a peer
// that announces it does.
func TestResetOnlyForPeersThatAnnounceIt(t *testing.T) {
	for _, tt := range []struct {
		name    string
		headers string
		want    byte
	}{
		{"qbee-v1 peer", "", cmdFIN},
		{"peer with the extension", "Tether-Extensions: reset\r\n", cmdRST},
	} {
		t.Run(tt.name, func(t *testing.T) {
			us, pki := newUpgradeServer(t, nil)
			p := rawDial(t, us.addr, pki)
			p.Write([]byte("GET /client/d1 HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n" + tt.headers + "\r\n"))
			h := p.Expect101()
			require.Equal(t, "reset", h.Get("Tether-Extensions"), "the edge announces its extensions")
			s := us.session(t)
			p.Write(frame(2, cmdSYN, 3, nil))
			st, err := s.Accept()
			require.NoError(t, err)
			require.NoError(t, st.Abort())
			for {
				cmd, sid, _, err := p.ReadFrame()
				require.NoError(t, err)
				if sid == 3 {
					require.Equal(t, tt.want, cmd)
					break
				}
			}
		})
	}
}

// TestInboundReset: a RST from the peer ends the stream with
// ErrStreamReset after the bytes that came before it; writes fail.
func TestInboundReset(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("partial")), frame(2, cmdRST, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	got, err := io.ReadAll(st)
	require.ErrorIs(t, err, transport.ErrStreamReset)
	require.Equal(t, "partial", string(got))
	_, err = st.Write([]byte("x"))
	require.ErrorIs(t, err, transport.ErrStreamReset)
	require.NotErrorIs(t, err, transport.ErrStoppedReading, "a reset before the FIN is no normal end")
}

// TestResetAfterFINKeepsTheEnd: a peer that finished its stream (FIN) and
// then resets it, because it was sent more than it reads, has still sent
// every byte: reads end in EOF after them, and only writes fail, with
// ErrStoppedReading. Both frames arrive before the first read, as they may
// on a busy link.
func TestResetAfterFINKeepsTheEnd(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("complete")), frame(2, cmdFIN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	p.Write(frame(2, cmdRST, 3, []byte("nobody reads")))
	_ = st.SetWriteDeadline(time.Now().Add(waitLong))
	var werr error
	require.Eventually(t, func() bool {
		_, werr = st.Write([]byte("x"))
		return errors.Is(werr, transport.ErrStreamReset)
	}, waitLong, time.Millisecond, "writes go on after the peer's reset")
	// The peer finished first: it only reads no more, a normal end.
	require.ErrorIs(t, werr, transport.ErrStoppedReading)
	require.Contains(t, werr.Error(), "nobody reads")
	_ = st.SetReadDeadline(time.Now().Add(waitLong))
	got, err := io.ReadAll(st)
	require.NoError(t, err, "a reset after the FIN turned a complete stream into an error")
	require.Equal(t, "complete", string(got))
}

// TestCloseAfterConnectionEndKeepsUnreadBytes: the peer sends its last
// bytes and FIN and closes the connection; this side sees the session end
// and closes it, as an edge does when a device goes, before the stream's
// reader got to the bytes. The reader still reads them and a clean end.
func TestCloseAfterConnectionEndKeepsUnreadBytes(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)
	p.Write(frame(2, cmdSYN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	p.Write(frame(2, cmdPSH, 3, []byte("the last bytes")), frame(2, cmdFIN, 3, nil))
	require.NoError(t, p.Conn.Close())
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("the session did not see its connection end")
	}
	require.NoError(t, s.Close())
	// The close waits for the reader, but the session is closed: Accept
	// and Open say so, as after any close.
	_, err = s.Accept()
	require.ErrorIs(t, err, transport.ErrSessionClosed, "Accept while the close waits for the reader")
	_, err = s.Open()
	require.ErrorIs(t, err, transport.ErrSessionClosed, "Open while the close waits for the reader")
	_ = st.SetReadDeadline(time.Now().Add(waitLong))
	got, err := io.ReadAll(st)
	require.NoError(t, err)
	require.Equal(t, "the last bytes", string(got))
	require.NoError(t, st.Close())
	_, err = s.Accept()
	require.ErrorIs(t, err, transport.ErrSessionClosed, "Accept after the close")
}

// TestDataAfterCloseIsReset: data that arrives for a stream this side
// closed before the peer finished it is answered with a reset, so a peer
// that keeps sending learns that nobody reads.
func TestDataAfterCloseIsReset(t *testing.T) {
	p, s := resetPeer(t)
	p.Write(frame(2, cmdSYN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	require.NoError(t, st.Close())
	p.Write(frame(2, cmdPSH, 3, []byte("more")))
	cmds, _ := framesUntilReset(t, p, 3)
	require.Equal(t, []byte{cmdFIN, cmdRST}, cmds)
	require.Zero(t, s.Marked(), "the reset of a closed stream left a mark that nothing clears")
}

// resetPeer is a raw peer that announces stream resets, and the session it
// upgraded.
func resetPeer(t *testing.T) (*rawPeer, *transport.Session) {
	t.Helper()
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Write([]byte("GET /client/d1 HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\nTether-Extensions: reset\r\n\r\n"))
	p.Expect101()
	return p, us.session(t)
}

// framesUntilReset reads frames until stream sid's reset and returns the
// commands that came for sid, and the reset's reason.
func framesUntilReset(t *testing.T, p *rawPeer, sid uint32) (cmds []byte, reason string) {
	t.Helper()
	for {
		cmd, id, data, err := p.ReadFrame()
		require.NoError(t, err)
		if id != sid {
			continue
		}
		cmds = append(cmds, cmd)
		if cmd == cmdRST {
			return cmds, string(data)
		}
	}
}

// TestCloseWithUnreadBytesResets: a client stops reading a download, so
// that every window on the path fills, and then closes its stream. Its
// stream is reset right after the FIN, as a TCP socket closed with unread
// data is: the edge's writer, blocked on the client's full window, would
// otherwise wait for a window that never opens while the target went on.
// The reset crosses the edge, and the device resets the target.
func TestCloseWithUnreadBytesResets(t *testing.T) {
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, nil)
	ended := make(chan error, 1)
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		_, _ = c.Write([]byte("hello"))
		chunk := make([]byte, 32<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				ended <- err
				return
			}
		}
	})
	conn, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, []byte(target))
	require.NoError(t, err)
	_, err = io.ReadFull(conn, make([]byte, 5))
	require.NoError(t, err)
	// Every window on the path fills while the client reads nothing.
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, conn.Close())
	select {
	case err := <-ended:
		require.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE), "the target's writes must fail after a reset, got %v", err)
	case <-time.After(waitLong):
		t.Fatal("the target still writes into a stream its client closed")
	}
}

// TestCloseWithUnreadBytesSendsFINThenReset: on the wire, the reset
// follows the FIN at once, with its reason, and no second reset answers
// data that arrives afterwards.
func TestCloseWithUnreadBytesSendsFINThenReset(t *testing.T) {
	p, s := resetPeer(t)
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("unread")))
	st, err := s.Accept()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Unread() }, waitLong, time.Millisecond)
	require.NoError(t, st.Close())
	cmds, reason := framesUntilReset(t, p, 3)
	require.Equal(t, []byte{cmdFIN, cmdRST}, cmds)
	require.Equal(t, "the receiver closed the stream and reads no more", reason)
	require.Zero(t, s.Marked(), "the reset of a closed stream left a mark that nothing clears")

	// More data for the closed stream, then a stream that the session
	// answers: nothing comes for stream 3 before stream 5's reset.
	p.Write(frame(2, cmdPSH, 3, []byte("more")), frame(2, cmdSYN, 5, nil), frame(2, cmdPSH, 5, []byte("unread")))
	st5, err := s.Accept()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Unread() }, waitLong, time.Millisecond)
	require.NoError(t, st5.Close())
	for {
		cmd, sid, _, err := p.ReadFrame()
		require.NoError(t, err)
		require.NotEqual(t, uint32(3), sid, "a second frame (%#x) for a stream already reset", cmd)
		if sid == 5 && cmd == cmdRST {
			break
		}
	}
}

// TestSpliceIntoAPeerThatStoppedReading: the stream's peer sends its
// answer, ends the stream and then resets it, reading no more, while the
// other end of the splice still sends. The answer arrives whole, and the
// splice ends with ErrStoppedReading: a normal end for what is behind
// the stream, which a relay audits as such.
func TestSpliceIntoAPeerThatStoppedReading(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("complete")), frame(2, cmdFIN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)

	app, relay := transport.TCPPair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := transport.Splice(testCtx(t), relay, st, nil)
		done <- err
	}()
	go func() {
		chunk := make([]byte, 16<<10)
		for {
			if _, err := app.Write(chunk); err != nil {
				return
			}
		}
	}()
	_ = app.SetReadDeadline(time.Now().Add(waitLong))
	got, err := io.ReadAll(app)
	require.NoError(t, err)
	require.Equal(t, "complete", string(got))
	// The relay's bytes reach the peer, which then refuses the rest.
	for {
		_, sid, _, err := p.ReadFrame()
		require.NoError(t, err)
		if sid == 3 {
			break
		}
	}
	p.Write(frame(2, cmdRST, 3, []byte("the receiver closed the stream and reads no more")))
	select {
	case err := <-done:
		require.ErrorIs(t, err, transport.ErrStoppedReading)
		require.ErrorIs(t, err, transport.ErrStreamReset)
	case <-time.After(waitLong):
		t.Fatal("the splice did not end")
	}
}
