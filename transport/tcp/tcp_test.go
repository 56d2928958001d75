package tcp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// rig connects a device serving TCP tunnels with h (the zero Handler when
// nil) to a test broker, and returns a client bound to it.
func rig(t *testing.T, h *tcp.Handler) *client.Client {
	t.Helper()
	if h == nil {
		h = &tcp.Handler{}
	}
	if h.Logger == nil {
		h.Logger = testbroker.Logger(t)
	}
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{wire.MsgTCP: h.Serve})
	return b.DialClient(t, nil)
}

func TestTunnelRoundTrip(t *testing.T) {
	cl := rig(t, nil)
	target := testutil.TCPServer(t, testutil.LineEcho)

	conn, err := tcp.Dial(testbroker.Ctx(t), cl, target)
	require.NoError(t, err)
	defer conn.Close()
	msg := testbroker.Pattern(7, 200_000)
	errc := make(chan error, 1)
	go func() { _, err := conn.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.True(t, bytes.Equal(msg, got), "echo differs from what was sent")
}

func TestTunnelDialRefusedIsRemoteError(t *testing.T) {
	cl := rig(t, nil)
	addr := testutil.ClosedAddr(t)

	_, err := tcp.Dial(testbroker.Ctx(t), cl, addr)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "dial tcp "+addr+": connect: connection refused (nothing listens there, as seen from the device)", re.Reason)
}

// TestDialEarly: the request and the first bytes go out before the
// answer; the echo comes back through the tunnel. A refused target is the
// first Read's error, and the bytes written before it go nowhere.
func TestDialEarly(t *testing.T) {
	cl := rig(t, nil)
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)

	conn, err := tcp.DialEarly(testbroker.Ctx(t), cl, target)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("early"))
	require.NoError(t, err)
	require.NoError(t, conn.(interface{ CloseWrite() error }).CloseWrite())
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Equal(t, "echo:EARLY", string(got))

	refused, err := tcp.DialEarly(testbroker.Ctx(t), cl, testutil.ClosedAddr(t))
	require.NoError(t, err, "an optimistic dial returns before the answer")
	defer refused.Close()
	_, _ = refused.Write([]byte("dropped"))
	_, err = refused.Read(make([]byte, 1))
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "connection refused")
}

// TestTunnelHalfClose: the client writes a request and half-closes; the
// target answers only after EOF, and the client reads the whole answer.
func TestTunnelHalfClose(t *testing.T) {
	cl := rig(t, nil)
	target := testutil.TCPServer(t, testbroker.PatternAfterEOF)

	for _, size := range []int{0, 1, 300_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			conn, err := tcp.Dial(testbroker.Ctx(t), cl, target)
			require.NoError(t, err)
			defer conn.Close()
			req := binary.BigEndian.AppendUint32(nil, uint32(size))
			req = append(req, 42)
			_, err = conn.Write(req)
			require.NoError(t, err)
			require.NoError(t, conn.(*transport.Stream).CloseWrite())
			got, err := io.ReadAll(conn)
			require.NoError(t, err)
			require.Equal(t, size, len(got), "response length")
			require.True(t, bytes.Equal(testbroker.Pattern(42, size), got), "response content differs")
		})
	}
}

// TestHandlerAuthorizes: the device side refuses what it may not reach,
// with a reason the client reads, and connects to exactly the addresses
// Authorize returned.
func TestHandlerAuthorizes(t *testing.T) {
	upper := testutil.TCPServer(t, testutil.EchoAfterEOF)
	_, port, err := net.SplitHostPort(upper)
	require.NoError(t, err)
	// service.internal resolves nowhere: only Authorize knows where it is.
	byName := func(_ context.Context, tg target.Target) ([]netip.Addr, error) {
		if tg.Host != "service.internal" {
			return nil, errors.New("refused: only service.internal is served here")
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	tests := []struct {
		name      string
		authorize func(context.Context, target.Target) ([]netip.Addr, error)
		target    string
		want      string // in the Error answer; empty: the tunnel opens
	}{
		{"loopback by default", nil, upper, ""},
		{"not loopback", nil, "192.0.2.1:" + port, "loopback addresses only"},
		{"not a target", nil, "no port here", "bad TCP tunnel target"},
		{"authorized name", byName, "service.internal:" + port, ""},
		{"refused by Authorize", byName, upper, "refused: only service.internal is served here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := rig(t, &tcp.Handler{Authorize: tt.authorize})
			conn, err := tcp.Dial(testbroker.Ctx(t), cl, tt.target)
			if tt.want != "" {
				var re *wire.RemoteError
				require.ErrorAs(t, err, &re)
				require.Contains(t, re.Reason, tt.want)
				return
			}
			require.NoError(t, err)
			defer conn.Close()
			_, err = io.WriteString(conn, "ping")
			require.NoError(t, err)
			require.NoError(t, conn.(*transport.Stream).CloseWrite())
			got, err := io.ReadAll(conn)
			require.NoError(t, err)
			require.Equal(t, "echo:PING", string(got))
		})
	}
}
