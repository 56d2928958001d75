package transport_test

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
)

// TestKeepAliveFindsASilentPeer: a peer that announced a short keep-alive
// interval and then falls silent is presumed dead after the timeout, and
// this side's NOPs keep flowing meanwhile.
func TestKeepAliveFindsASilentPeer(t *testing.T) {
	cfg := &transport.Config{KeepAliveInterval: 50 * time.Millisecond, KeepAliveTimeout: 400 * time.Millisecond}
	us, pki := newUpgradeServer(t, cfg)
	p := rawDial(t, us.addr, pki)
	p.Write([]byte("GET /device HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\nTether-Keepalive: 100\r\n\r\n"))
	h := p.Expect101()
	require.Equal(t, "50", h.Get("Tether-Keepalive"), "the edge announces its interval in milliseconds")
	s := us.session(t)

	cmd, sid, _, err := p.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, []any{byte(cmdNOP), uint32(0)}, []any{cmd, sid}, "keep-alive frames are sent")
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("a silent peer kept its session")
	}
	require.ErrorIs(t, s.Err(), transport.ErrKeepAliveTimeout)
	_, err = s.Accept()
	require.ErrorIs(t, err, transport.ErrKeepAliveTimeout)
}

// TestKeepAliveSparesReferencePeers: a qbee-v1 peer announces no interval
// and sends a NOP only every 45 s. Its session is not cut at our short
// timeout: it gets the reference peers' own 120 s.
func TestKeepAliveSparesReferencePeers(t *testing.T) {
	cfg := &transport.Config{KeepAliveInterval: 50 * time.Millisecond, KeepAliveTimeout: 200 * time.Millisecond}
	us, pki := newUpgradeServer(t, cfg)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/device")
	s := us.session(t)
	// Ten of our timeouts pass in silence.
	for range 40 {
		cmd, _, _, err := p.ReadFrame()
		require.NoError(t, err)
		require.Equal(t, byte(cmdNOP), cmd)
	}
	require.NoError(t, s.Err())
	select {
	case <-s.Done():
		t.Fatal("a qbee-v1 peer was cut at our own timeout")
	default:
	}
}

// TestKeepAliveBetweenOurOwnPeers: a dialer and an edge of ours keep an
// idle session alive with their NOPs, for many timeouts.
func TestKeepAliveBetweenOurOwnPeers(t *testing.T) {
	cfg := &transport.Config{KeepAliveInterval: 20 * time.Millisecond, KeepAliveTimeout: 150 * time.Millisecond}
	b := testbroker.New(t, cfg)
	dc := b.StartDevice(t, cfg, nil)
	dev := b.DeviceSession()
	time.Sleep(1500 * time.Millisecond) // ten timeouts of silence but for NOPs
	require.True(t, dc.Connected())
	select {
	case <-dev.Done():
		t.Fatalf("the idle session ended: %v", dev.Err())
	default:
	}
	require.Equal(t, 1, b.DeviceConnects(), "the device reconnected")
}

// TestUserTimeoutIsSet: the session's TCP connection carries
// TCP_USER_TIMEOUT, on both sides, so a dead peer host is found whatever
// the peer's keep-alive.
func TestUserTimeoutIsSet(t *testing.T) {
	cfg := &transport.Config{KeepAliveInterval: 2 * time.Second, KeepAliveTimeout: 9 * time.Second}
	b := testbroker.New(t, cfg)
	b.StartDevice(t, cfg, nil)
	dev := b.DeviceSession()
	require.Equal(t, 7*time.Second, userTimeout(t, dev.RemoteAddr(), dev.LocalAddr()))
}

// userTimeout reads TCP_USER_TIMEOUT of this process's socket from local
// to remote.
func userTimeout(t *testing.T, remote, local net.Addr) time.Duration {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		in4, ok := sa.(*unix.SockaddrInet4)
		if !ok || in4.Port != local.(*net.TCPAddr).Port {
			continue
		}
		pa, err := unix.Getpeername(fd)
		if err != nil || pa.(*unix.SockaddrInet4).Port != remote.(*net.TCPAddr).Port {
			continue
		}
		ms, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		require.NoError(t, err)
		return time.Duration(ms) * time.Millisecond
	}
	t.Fatalf("no socket %v -> %v", local, remote)
	return 0
}

// TestKeepAliveFindsAPeerSilentInAResetReason: a peer that sends a stream
// reset's header and then falls silent before its reason has been sent in
// full is presumed dead after the timeout, as at any other point of a
// frame. Reading the reason is reading from the peer.
func TestKeepAliveFindsAPeerSilentInAResetReason(t *testing.T) {
	cfg := &transport.Config{KeepAliveInterval: 50 * time.Millisecond, KeepAliveTimeout: 400 * time.Millisecond}
	us, pki := newUpgradeServer(t, cfg)
	p := rawDial(t, us.addr, pki)
	p.Write([]byte("GET /device HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\nTether-Keepalive: 100\r\n\r\n"))
	p.Expect101()
	s := us.session(t)

	p.Write(frame(2, cmdSYN, 1, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	defer st.Close()
	rst := frame(2, cmdRST, 1, []byte("the reason, sent in part"))
	p.Write(rst[:len(rst)-10])
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("a peer silent within a reset's reason kept its session")
	}
	require.ErrorIs(t, s.Err(), transport.ErrKeepAliveTimeout)
}
