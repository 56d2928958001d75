package transport_test

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// cmdRST is the stream reset of our extension (docs/protocol.md).
const cmdRST = 0x81

// TestLostDeviceLegIsAnErrorForTheClient: the device's connection dies in
// the middle of a download. The client must read an error, never an EOF
// that would make a truncated download look complete.
func TestLostDeviceLegIsAnErrorForTheClient(t *testing.T) {
	b, pki := newBroker(t, nil)
	dev := startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
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
	conn, err := tcp.Dial(testCtx(t), cl, target)
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
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	ended := make(chan error, 1)
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		_, err := io.Copy(io.Discard, c)
		ended <- err
	})
	conn, err := tcp.Dial(testCtx(t), cl, target)
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
			p.write([]byte("GET /client/d1 HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n" + tt.headers + "\r\n"))
			h := p.expect101()
			require.Equal(t, "reset", h.Get("Tether-Extensions"), "the edge announces its extensions")
			s := us.session(t)
			p.write(frame(2, cmdSYN, 3, nil))
			st, err := s.Accept()
			require.NoError(t, err)
			require.NoError(t, st.Abort())
			for {
				cmd, sid, _, err := p.readFrame()
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
	p.upgrade("/client/d1")
	s := us.session(t)
	p.write(frame(2, cmdSYN, 3, nil), frame(2, cmdPSH, 3, []byte("partial")), frame(2, cmdRST, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	got, err := io.ReadAll(st)
	require.ErrorIs(t, err, transport.ErrStreamReset)
	require.Equal(t, "partial", string(got))
	_, err = st.Write([]byte("x"))
	require.ErrorIs(t, err, transport.ErrStreamReset)

	// A RST with a payload is malformed.
	p.write(frame(2, cmdSYN, 5, nil), frame(2, cmdRST, 5, []byte("x")))
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("a RST with a payload was accepted")
	}
	require.ErrorIs(t, s.Err(), transport.ErrProtocolViolation)
}

// TestDataAfterCloseIsReset: data that arrives for a stream this side
// closed before the peer finished it is answered with a reset, so a peer
// that keeps sending learns that nobody reads.
func TestDataAfterCloseIsReset(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.write([]byte("GET /client/d1 HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\nTether-Extensions: reset\r\n\r\n"))
	p.expect101()
	s := us.session(t)
	p.write(frame(2, cmdSYN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	require.NoError(t, st.Close())
	p.write(frame(2, cmdPSH, 3, []byte("more")))
	var cmds []byte
	for {
		cmd, sid, _, err := p.readFrame()
		require.NoError(t, err)
		if sid != 3 {
			continue
		}
		cmds = append(cmds, cmd)
		if cmd == cmdRST {
			break
		}
	}
	require.Equal(t, []byte{cmdFIN, cmdRST}, cmds)
}

// TestClientDoneWhenTheConnectionDies: Client.Done reports a dead
// connection at once, not after the keep-alive timeout.
func TestClientDoneWhenTheConnectionDies(t *testing.T) {
	b, pki := newBroker(t, &transport.Config{KeepAliveTimeout: time.Hour, KeepAliveInterval: time.Minute})
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, &transport.Config{KeepAliveTimeout: time.Hour, KeepAliveInterval: time.Minute})
	require.Eventually(t, func() bool { // the broker holds the session
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.clients) == 1
	}, waitLong, time.Millisecond)
	b.restart() // closes every session
	select {
	case <-cl.Done():
	case <-time.After(waitLong):
		t.Fatal("Done did not report the dead connection")
	}
	_, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, []byte("127.0.0.1:1"))
	require.Error(t, err)
	require.False(t, errors.Is(err, wire.ErrNoAnswer))
}
