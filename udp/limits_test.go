package udp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
	"github.com/tetherhq/tether/udp"
)

// readFrame reads one frame from a tunnel stream within a generous
// deadline.
func readFrame(t *testing.T, st *transport.Stream) (uint16, []byte) {
	t.Helper()
	require.NoError(t, st.SetReadDeadline(time.Now().Add(10*time.Second)))
	hdr := make([]byte, udp.FrameHeaderSize)
	_, err := io.ReadFull(st, hdr)
	require.NoError(t, err, "no frame arrived")
	data := make([]byte, int(hdr[2])<<8|int(hdr[3]))
	_, err = io.ReadFull(st, data)
	require.NoError(t, err, "the frame was cut short")
	return uint16(hdr[0])<<8 | uint16(hdr[1]), data
}

// rawSocket is a UDP socket on 127.0.0.1 that nothing reads but the test.
func rawSocket(t *testing.T) (*net.UDPConn, uint16) {
	t.Helper()
	c, err := net.ListenUDP("udp", mustUDPAddr(t, "127.0.0.1:0"))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// requireNothingWaiting checks that no datagram waits on c. It is called
// once a datagram sent after the unwanted one has arrived elsewhere: on
// loopback the unwanted one would be queued on c by then.
func requireNothingWaiting(t *testing.T, c *net.UDPConn, msg string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	buf := make([]byte, 100)
	n, from, err := c.ReadFromUDP(buf)
	require.Truef(t, errors.Is(err, os.ErrDeadlineExceeded), "%s: got %q from %v (err %v); want nothing", msg, buf[:n], from, err)
}

// TestTunnelReachesOnlyAuthorizedPort: a client allowed port A of a host
// cannot send to port B of the same host by writing B in a frame.
func TestTunnelReachesOnlyAuthorizedPort(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	srv := newUDPServer(t, "127.0.0.1:0", echo)
	other, otherPort := rawSocket(t)
	st := rawTunnel(t, r, "0:"+srv.addr())

	// The frame for the other port goes first; the one for the authorized
	// port after it, in the same write.
	all := append(frame(t, otherPort, []byte("sneak")), frame(t, uint16(srv.port()), []byte("q"))...)
	_, err := st.Write(all)
	require.NoError(t, err)
	port, data := readFrame(t, st)
	assert.Equal(t, uint16(srv.port()), port)
	assert.Equal(t, "answer:q", string(data))

	requireNothingWaiting(t, other, "a second UDP server of the target's host")
	s := r.dev.Stats()
	assert.EqualValues(t, 1, s.DroppedPort, "got DroppedPort %d; want 1", s.DroppedPort)
	require.Eventually(t, func() bool { return r.dev.Stats().DatagramsOut == 1 }, 10*time.Second, 5*time.Millisecond)
}

// TestTunnelReachesPortTheTargetAnsweredFrom: once the target answers from
// another port (as TFTP does), the client may send to that port; before,
// it may not.
func TestTunnelReachesPortTheTargetAnsweredFrom(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	alt, altPort := rawSocket(t)
	srv := newUDPServer(t, "127.0.0.1:0", func(from *net.UDPAddr, d []byte) []byte {
		_, _ = alt.WriteToUDP(append([]byte("from-alt:"), d...), from)
		return nil
	})
	st := rawTunnel(t, r, "0:"+srv.addr())

	// Before the target answered from altPort, the port is out of reach.
	all := append(frame(t, altPort, []byte("early")), frame(t, uint16(srv.port()), []byte("hello"))...)
	_, err := st.Write(all)
	require.NoError(t, err)
	port, data := readFrame(t, st)
	assert.Equal(t, altPort, port, "the answer's frame names the port it came from")
	assert.Equal(t, "from-alt:hello", string(data))
	requireNothingWaiting(t, alt, "the target's other port before it answered from there")
	assert.EqualValues(t, 1, r.dev.Stats().DroppedPort)

	// Now the client may answer there.
	_, err = st.Write(frame(t, altPort, []byte("back")))
	require.NoError(t, err)
	got, _ := readFrom(t, alt)
	assert.Equal(t, "back", string(got))
	assert.EqualValues(t, 1, r.dev.Stats().DroppedPort, "a datagram to a port the target answered from must pass")
}

// TestTunnelReplyPortsBounded: a tunnel remembers the target's most recent
// reply ports only; the oldest is out of reach again past the cap.
func TestTunnelReplyPortsBounded(t *testing.T) {
	const ports = 9 // one more than the device remembers
	r := newRig(t, udp.DeviceConfig{})
	alts := make([]*net.UDPConn, ports)
	altPorts := make([]uint16, ports)
	for i := range alts {
		alts[i], altPorts[i] = rawSocket(t)
	}
	// The target answers datagram i from its socket i.
	srv := newUDPServer(t, "127.0.0.1:0", func(from *net.UDPAddr, d []byte) []byte {
		var i int
		if _, err := fmt.Sscanf(string(d), "%d", &i); err == nil && i >= 0 && i < ports {
			_, _ = alts[i].WriteToUDP(d, from)
		}
		return nil
	})
	st := rawTunnel(t, r, "0:"+srv.addr())
	for i := 0; i < ports; i++ {
		_, err := st.Write(frame(t, uint16(srv.port()), []byte(fmt.Sprint(i))))
		require.NoError(t, err)
		port, data := readFrame(t, st)
		require.Equal(t, altPorts[i], port, "answer %d", i)
		require.Equal(t, fmt.Sprint(i), string(data))
	}

	// The first reply port was forgotten; the last one is in reach. The
	// frame for the forgotten port goes first.
	all := append(frame(t, altPorts[0], []byte("forgotten")), frame(t, altPorts[ports-1], []byte("recent"))...)
	_, err := st.Write(all)
	require.NoError(t, err)
	got, _ := readFrom(t, alts[ports-1])
	assert.Equal(t, "recent", string(got))
	requireNothingWaiting(t, alts[0], "the oldest reply port past the cap")
	assert.EqualValues(t, 1, r.dev.Stats().DroppedPort)
}

// TestReplyRatioClosesFlow: a target that answers each 40-byte query with
// 4 KiB is relayed only up to the cap (10x the queries plus the
// allowance); then the device closes the flow with a reason the client
// reports, and the peer's next datagram opens a new flow.
func TestReplyRatioClosesFlow(t *testing.T) {
	const (
		ratio     = 10
		allowance = 16 << 10
		query     = 40
		answer    = 4096
	)
	r := newRig(t, udp.DeviceConfig{MaxReplyRatio: ratio, ReplyRatioWindow: time.Hour, ReplyAllowance: allowance})
	srv := newUDPServer(t, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte {
		return bytes.Repeat([]byte{'A'}, answer)
	})
	closes := make(chan *udp.DeviceCloseError, 10)
	l := r.listen(t, srv.addr(), &udp.Listener{OnDeviceClose: func(e *udp.DeviceCloseError) { closes <- e }})
	peer := localPeer(t)
	dst := l.Addr().(*net.UDPAddr)

	// k answers pass while k×answer ≤ ratio×k×query + allowance: k ≤ 4.
	passing := allowance / (answer - ratio*query)
	require.Equal(t, 4, passing)
	for i := 0; i < passing; i++ {
		_, err := peer.WriteToUDP(bytes.Repeat([]byte{'q'}, query), dst)
		require.NoError(t, err)
		got, _ := readFrom(t, peer)
		require.Len(t, got, answer, "answer %d", i)
	}
	_, err := peer.WriteToUDP(bytes.Repeat([]byte{'q'}, query), dst)
	require.NoError(t, err)
	var e *udp.DeviceCloseError
	select {
	case e = <-closes:
	case <-time.After(10 * time.Second):
		t.Fatalf("the device did not close the flow past the reply cap; device %+v", r.dev.Stats())
	}
	assert.Equal(t, "reply traffic exceeded 10x the requests over 1h0m0s", e.Reason)
	assert.Equal(t, peer.LocalAddr().String(), e.Peer.String())
	assert.Equal(t, l.Addr().String(), e.Local.String())
	assert.Equal(t, srv.addr(), e.Remote)
	assert.ErrorIs(t, e, udp.ErrClosedByDevice)
	assert.Contains(t, e.Error(), "closed by the device: reply traffic exceeded")

	// The answer over the cap never reached the peer.
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, _, err = peer.ReadFromUDP(make([]byte, answer))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the answer over the cap must not be relayed")
	require.Eventually(t, func() bool {
		return r.dev.Stats().ClosedReplyRatio == 1 && r.dev.Stats().Active == 0 && l.Stats().Peers == 0
	}, 20*time.Second, 10*time.Millisecond, "device %+v listener %+v", r.dev.Stats(), l.Stats())
	assert.EqualValues(t, 1, l.Stats().ClosedByDevice)
	assert.EqualValues(t, passing, l.Stats().DatagramsIn)

	// The next datagram opens a new flow, with a new budget.
	_, err = peer.WriteToUDP(bytes.Repeat([]byte{'q'}, query), dst)
	require.NoError(t, err)
	got, _ := readFrom(t, peer)
	assert.Len(t, got, answer)
	assert.EqualValues(t, 2, r.dev.Stats().Opened)
}

// TestReplyRatioLetsOneLargeAnswerThrough: with the defaults, one answer
// of nearly the largest size to a small query passes, and the flow stays
// open.
func TestReplyRatioLetsOneLargeAnswerThrough(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	srv := newUDPServer(t, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte {
		if string(d) == "big" {
			return bytes.Repeat([]byte{'T'}, 60000)
		}
		return d
	})
	l := r.listen(t, srv.addr(), nil)
	peer := localPeer(t)
	dst := l.Addr().(*net.UDPAddr)

	_, err := peer.WriteToUDP([]byte("big"), dst)
	require.NoError(t, err)
	got, _ := readFrom(t, peer)
	assert.Len(t, got, 60000)
	_, err = peer.WriteToUDP([]byte("small"), dst)
	require.NoError(t, err)
	got, _ = readFrom(t, peer)
	assert.Equal(t, "small", string(got))
	assert.Zero(t, r.dev.Stats().ClosedReplyRatio)
	assert.EqualValues(t, 1, r.dev.Stats().Opened)
	assert.Zero(t, l.Stats().ClosedByDevice)
}

// TestReplyRatioOff: a negative MaxReplyRatio relays every answer.
func TestReplyRatioOff(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{MaxReplyRatio: -1, ReplyAllowance: -1})
	srv := newUDPServer(t, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte {
		return bytes.Repeat([]byte{'A'}, 4096)
	})
	l := r.listen(t, srv.addr(), nil)
	peer := localPeer(t)
	for i := 0; i < 20; i++ {
		_, err := peer.WriteToUDP([]byte("q"), l.Addr().(*net.UDPAddr))
		require.NoError(t, err)
		got, _ := readFrom(t, peer)
		require.Len(t, got, 4096, "answer %d", i)
	}
	assert.Zero(t, r.dev.Stats().ClosedReplyRatio)
	assert.EqualValues(t, 1, r.dev.Stats().Opened)
}

// TestListenerShowsDeviceCloseReason: a close frame ends the peer's flow;
// the Listener reports the reason, made safe to print, and relays nothing
// that follows it.
func TestListenerShowsDeviceCloseReason(t *testing.T) {
	const remotePort = 5300
	r := newRawRigWith(t, func(ctx context.Context, st *transport.Stream, payload []byte) error {
		if err := wire.WriteOK(st, nil); err != nil {
			return nil
		}
		// Answer the peer's datagram, so that it went out before the
		// close frame and nothing is left to drop.
		if _, err := io.ReadFull(st, make([]byte, udp.FrameHeaderSize+len("q"))); err != nil {
			return nil
		}
		var fr []byte
		fr, _ = udp.AppendFrame(fr, remotePort, []byte("good"))
		fr, _ = udp.AppendFrame(fr, 0, []byte("\x1b[2J\x1b[31mover\r\ncap\u202e\xff"))
		fr, _ = udp.AppendFrame(fr, remotePort, []byte("after"))
		_, _ = st.Write(fr)
		// Keep the stream open: the client must end it on its own.
		_, _ = io.Copy(io.Discard, st)
		return nil
	})
	closes := make(chan *udp.DeviceCloseError, 10)
	l := r.listen(t, fmt.Sprintf("127.0.0.1:%d", remotePort), &udp.Listener{
		IdleTimeout:   time.Hour,
		OnDeviceClose: func(e *udp.DeviceCloseError) { closes <- e },
	})
	peer := localPeer(t)
	_, err := peer.WriteToUDP([]byte("q"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, _ := readFrom(t, peer)
	assert.Equal(t, "good", string(got))

	select {
	case e := <-closes:
		assert.Equal(t, "[2J [31mover cap \uFFFD", e.Reason, "the reason must be one printable line")
		assert.Equal(t, peer.LocalAddr().String(), e.Peer.String())
	case <-time.After(10 * time.Second):
		t.Fatal("the close frame was not reported")
	}
	require.Eventually(t, func() bool { return l.Stats().Peers == 0 }, 20*time.Second, 10*time.Millisecond,
		"the Listener must end the flow at the close frame")
	requireNothingWaiting(t, peer, "a datagram after the close frame")
	st := l.Stats()
	assert.EqualValues(t, 1, st.ClosedByDevice)
	assert.EqualValues(t, 1, st.DatagramsIn)
	assert.EqualValues(t, 1, st.DatagramsOut)
	assert.Zero(t, st.Dropped)
}
