package transport_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
)

// TestKeepAliveFindsASilentPeer: a peer that announced a short keep-alive
// interval and then falls silent is presumed dead after the timeout, and
// this side's NOPs keep flowing meanwhile.
func TestKeepAliveFindsASilentPeer(t *testing.T) {
	cfg := &transport.Config{KeepAliveInterval: 50 * time.Millisecond, KeepAliveTimeout: 400 * time.Millisecond}
	us, pki := newUpgradeServer(t, cfg)
	p := rawDial(t, us.addr, pki)
	p.write([]byte("GET /device HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\nTether-Keepalive: 100\r\n\r\n"))
	h := p.expect101()
	require.Equal(t, "50", h.Get("Tether-Keepalive"), "the edge announces its interval in milliseconds")
	s := us.session(t)

	cmd, sid, _, err := p.readFrame()
	require.NoError(t, err)
	require.Equal(t, []any{byte(cmdNOP), uint32(0)}, []any{cmd, sid}, "keep-alive frames are sent")
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("a silent peer kept its session")
	}
	require.ErrorIs(t, s.Err(), transport.ErrKeepAliveTimeout)
	_, err = s.AcceptStream()
	require.ErrorIs(t, err, transport.ErrKeepAliveTimeout)
}

// TestKeepAliveSparesReferencePeers: a qbee-v1 peer announces no interval
// and sends a NOP only every 45 s. Its session is not cut at our short
// timeout: it gets the reference peers' own 120 s.
func TestKeepAliveSparesReferencePeers(t *testing.T) {
	cfg := &transport.Config{KeepAliveInterval: 50 * time.Millisecond, KeepAliveTimeout: 200 * time.Millisecond}
	us, pki := newUpgradeServer(t, cfg)
	p := rawDial(t, us.addr, pki)
	p.upgrade("/device")
	s := us.session(t)
	// Ten of our timeouts pass in silence.
	for range 40 {
		cmd, _, _, err := p.readFrame()
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
	b, pki := newBroker(t, cfg)
	dc := startDevice(t, b, pki, cfg, nil)
	b.mu.Lock()
	dev := b.dev
	b.mu.Unlock()
	time.Sleep(1500 * time.Millisecond) // ten timeouts of silence but for NOPs
	require.True(t, dc.Connected())
	select {
	case <-dev.Done():
		t.Fatalf("the idle session ended: %v", dev.Err())
	case s := <-b.devCh:
		t.Fatalf("the device reconnected (%v)", s.RemoteAddr())
	default:
	}
}
