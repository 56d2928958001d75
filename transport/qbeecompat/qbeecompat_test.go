package qbeecompat_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/qbeecompat"
	"github.com/tetherhq/tether/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// upperServer answers, in upper case, everything the peer sent once the
// peer has finished writing: it needs a lossless half-close to answer.
func upperServer(t *testing.T) string {
	return testutil.TCPServer(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			return
		}
		_, _ = c.Write(bytes.ToUpper(b))
	})
}

// halfCloseExchange sends msg on c, closes its write side and returns all
// that comes back.
func halfCloseExchange(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err := io.WriteString(c, msg)
	require.NoError(t, err)
	require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(b)
}

// udpExchange sends msg from a fresh local socket to addr until an answer
// comes back, and returns it.
func udpExchange(t *testing.T, addr *net.UDPAddr, msg string) string {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, addr)
	require.NoError(t, err)
	defer conn.Close()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			require.NoError(t, err)
		}
	}
	t.Fatalf("no answer from %s within 30s", addr)
	return ""
}

func TestMessages(t *testing.T) {
	tests := []struct {
		name       string
		write      func(w io.Writer) error
		wantType   qbeecompat.MessageType
		wantOK     string // ExpectOK's payload
		wantReason string // the RemoteError's reason, when an Error
	}{
		{"message", func(w io.Writer) error {
			return qbeecompat.WriteMessage(w, qbeecompat.MessageTypeTCPTunnel, []byte("127.0.0.1:22"))
		},
			qbeecompat.MessageTypeTCPTunnel, "", ""},
		{"ok", func(w io.Writer) error { return qbeecompat.WriteOK(w, []byte("sid-1")) }, qbeecompat.MessageTypeOK, "sid-1", ""},
		{"error", func(w io.Writer) error { return qbeecompat.WriteError(w, errors.New("dial tcp: refused")) },
			qbeecompat.MessageTypeError, "", "dial tcp: refused"},
		{"nil error", func(w io.Writer) error { return qbeecompat.WriteError(w, nil) }, qbeecompat.MessageTypeError, "", "unknown error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, tc.write(&buf))
			raw := buf.Bytes()

			typ, payload, err := qbeecompat.ReadMessage(bytes.NewReader(raw))
			require.NoError(t, err)
			if typ != tc.wantType {
				t.Errorf("got type %v; want %v", typ, tc.wantType)
			}
			ok, err := qbeecompat.ExpectOK(bytes.NewReader(raw))
			switch tc.wantType {
			case qbeecompat.MessageTypeOK:
				require.NoError(t, err)
				if string(ok) != tc.wantOK {
					t.Errorf("got OK payload %q; want %q", ok, tc.wantOK)
				}
			case qbeecompat.MessageTypeError:
				var re *wire.RemoteError
				require.ErrorAs(t, err, &re)
				if re.Reason != tc.wantReason || string(payload) != tc.wantReason {
					t.Errorf("got reason %q (payload %q); want %q", re.Reason, payload, tc.wantReason)
				}
			default:
				require.ErrorIs(t, err, wire.ErrUnexpectedMessage)
			}
		})
	}

	t.Run("truncated", func(t *testing.T) {
		_, _, err := qbeecompat.ReadMessage(bytes.NewReader([]byte{0x10, 0x00, 0x05, 'a'}))
		require.ErrorIs(t, err, wire.ErrTruncated)
	})
	t.Run("no answer", func(t *testing.T) {
		_, err := qbeecompat.ExpectOK(bytes.NewReader(nil))
		require.ErrorIs(t, err, wire.ErrNoAnswer)
	})
}

// The reference's own tunnel test, on the compatibility layer: a device
// with HandleTCPTunnel and HandleUDPTunnel, a client with OpenTCPTunnel and
// OpenUDPTunnel, through NewEdgeMock.
func TestTunnelsThroughEdgeMock(t *testing.T) {
	upper := upperServer(t)
	echo := testutil.UDPEcho(t)
	client, dev, edge := qbeecompat.NewEdgeMock(t)
	dev.WithHandler(qbeecompat.MessageTypeTCPTunnel, qbeecompat.HandleTCPTunnel).
		WithHandler(qbeecompat.MessageTypeUDPTunnel, qbeecompat.HandleUDPTunnel)
	require.Same(t, dev, edge.DeviceClient())
	require.True(t, dev.IsRunning())
	ctx := ctxT(t)

	ln, err := client.OpenTCPTunnel(ctx, "127.0.0.1:0", upper)
	require.NoError(t, err)
	for i := range 2 { // a tunnel serves every connection
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		if got, want := halfCloseExchange(t, c, "hello"), "HELLO"; got != want {
			t.Errorf("connection %d: got %q; want %q", i, got, want)
		}
		c.Close()
	}
	require.NoError(t, ln.Close())
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("dialled the tunnel after its listener was closed; want refused")
	}

	// A second client from the mock reaches the same device.
	tun, err := edge.Client().OpenUDPTunnel(ctx, "127.0.0.1:0", echo)
	require.NoError(t, err)
	defer tun.Close()
	if got, want := udpExchange(t, tun.PrimaryAddr(), "ping"), "udp:ping"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestHandlers(t *testing.T) {
	client, dev, _ := qbeecompat.NewEdgeMock(t)
	ctx := ctxT(t)
	tests := []struct {
		name       string
		handler    qbeecompat.Handler
		wantOK     string
		wantReason string
	}{
		{name: "answers OK with a payload", wantOK: "reloaded",
			handler: func(ctx context.Context, st *qbeecompat.Stream, _ []byte) error {
				return qbeecompat.WriteOK(st, []byte("reloaded"))
			}},
		{name: "answers Error itself", wantReason: "config is broken",
			handler: func(ctx context.Context, st *qbeecompat.Stream, _ []byte) error {
				return qbeecompat.WriteError(st, errors.New("config is broken"))
			}},
		{name: "returns an error before answering", wantReason: "refused: not now",
			handler: func(ctx context.Context, st *qbeecompat.Stream, _ []byte) error {
				return errors.New("refused: not now")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev.WithHandler(qbeecompat.MessageTypeReload, tc.handler)
			st, ok, err := client.OpenStreamPayload(ctx, qbeecompat.MessageTypeReload, nil)
			if tc.wantReason != "" {
				var re *wire.RemoteError
				require.ErrorAs(t, err, &re)
				if re.Reason != tc.wantReason {
					t.Errorf("got reason %q; want %q", re.Reason, tc.wantReason)
				}
				return
			}
			require.NoError(t, err)
			st.Close()
			if string(ok) != tc.wantOK {
				t.Errorf("got OK payload %q; want %q", ok, tc.wantOK)
			}
		})
	}
}

// HandleTCPTunnel keeps the secure default of tcp.Handler: loopback only.
func TestHandleTCPTunnelServesLoopbackOnly(t *testing.T) {
	upper := upperServer(t)
	client, dev, _ := qbeecompat.NewEdgeMock(t)
	dev.WithHandler(qbeecompat.MessageTypeTCPTunnel, qbeecompat.HandleTCPTunnel)
	ctx := ctxT(t)

	st, err := client.OpenStream(ctx, qbeecompat.MessageTypeTCPTunnel, []byte(upper))
	require.NoError(t, err)
	if got, want := halfCloseExchange(t, st, "loopback"), "LOOPBACK"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	st.Close()

	_, err = client.OpenStream(ctx, qbeecompat.MessageTypeTCPTunnel, []byte("192.0.2.1:80"))
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	if !strings.Contains(re.Reason, "loopback addresses only") {
		t.Errorf("got reason %q; want it to say the device serves loopback addresses only", re.Reason)
	}
}

func TestNewDeviceClientEndpoint(t *testing.T) {
	tests := []struct {
		endpoint string
		wantErr  bool
	}{
		{"https://edge.example.com:8443/device", false},
		{"http://edge.example.com/device", true},
		{"https:///device", true},
		{"edge.example.com/device", true},
		{"", true},
		{"https://[::1/device", true},
	}
	for _, tc := range tests {
		t.Run(tc.endpoint, func(t *testing.T) {
			dc, err := qbeecompat.NewDeviceClient(tc.endpoint, nil)
			if got := err != nil; got != tc.wantErr {
				t.Fatalf("got error %v; want an error: %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "https://") {
					t.Errorf("got %q; want it to show the endpoint's form", err)
				}
				return
			}
			require.False(t, dc.IsRunning())
			require.NoError(t, dc.Close())
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// NewClient and NewDeviceClient on their own, against a Tether edge, through
// their life: start, connect, tunnel, close, and a start after close.
func TestNewClientAndNewDeviceClient(t *testing.T) {
	upper := upperServer(t)
	m := mock.New(t, mock.Options{})
	pki := m.PKI()
	dc, err := qbeecompat.NewDeviceClient(m.DeviceURL(), pki.DeviceTLS(pki.Device("dev-q")))
	require.NoError(t, err)
	var logs syncBuffer
	dc.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))).
		WithHandler(qbeecompat.MessageTypeTCPTunnel, qbeecompat.HandleTCPTunnel)
	dc.Native().BackoffInitial = 50 * time.Millisecond
	require.False(t, dc.IsRunning(), "running before Start")

	dc.Start(context.Background())
	dc.Start(context.Background()) // a second Start does nothing
	dc.Ready()
	require.True(t, dc.IsRunning())
	require.NoError(t, dc.Err())
	m.WaitDevice("dev-q")

	ctx := ctxT(t)
	c, err := qbeecompat.NewClient(ctx, m.ClientURL("dev-q"), "Bearer "+m.Token(), m.ClientTLS())
	require.NoError(t, err)
	ln, err := c.OpenTCPTunnel(ctx, "127.0.0.1:0", upper)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	if got, want := halfCloseExchange(t, conn, "direct"), "DIRECT"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	conn.Close()

	require.NoError(t, c.Close())
	if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		conn.Close()
		t.Errorf("the tunnel still accepts after its client was closed; want it closed")
	}
	_, err = c.OpenTCPTunnel(ctx, "127.0.0.1:0", upper)
	require.ErrorIs(t, err, qbeecompat.ErrClientClosed)
	require.NoError(t, c.Close(), "a second Close")

	require.NoError(t, dc.Close())
	require.False(t, dc.IsRunning(), "running after Close")
	require.NoError(t, dc.Err(), "a plain Close is no error")
	dc.Start(context.Background())
	require.ErrorIs(t, dc.Err(), device.ErrClosed)
	if !strings.Contains(logs.String(), "make a new DeviceClient") {
		t.Errorf("got logs %q; want Start's failure logged", logs.String())
	}
}

func TestDeviceClientStopsWithItsContext(t *testing.T) {
	m := mock.New(t, mock.Options{})
	pki := m.PKI()
	dc, err := qbeecompat.NewDeviceClient(m.DeviceURL(), pki.DeviceTLS(pki.Device("dev-ctx")))
	require.NoError(t, err)
	dc.WithLogger(nil)
	ctx, cancel := context.WithCancel(context.Background())
	dc.Start(ctx)
	dc.Ready()
	cancel()
	require.Eventually(t, func() bool { return !dc.IsRunning() }, 30*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, dc.Err(), context.Canceled)
	require.NoError(t, dc.Close())
}

func TestOpenTunnelBadInput(t *testing.T) {
	client, _, _ := qbeecompat.NewEdgeMock(t)
	ctx := ctxT(t)
	tests := []struct {
		name, local, remote, want string
		udp                       bool
	}{
		{name: "tcp remote without port", local: "127.0.0.1:0", remote: "127.0.0.1", want: "host:port"},
		{name: "tcp bad local", local: "not an address", remote: "127.0.0.1:22", want: "ip:port"},
		{name: "udp remote without port", local: "127.0.0.1:0", remote: "127.0.0.1", want: "host:port", udp: true},
		{name: "udp broadcast remote", local: "127.0.0.1:0", remote: "255.255.255.255:53", want: "refused", udp: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.udp {
				_, err = client.OpenUDPTunnel(ctx, tc.local, tc.remote)
			} else {
				_, err = client.OpenTCPTunnel(ctx, tc.local, tc.remote)
			}
			require.Error(t, err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q; want it to mention %q", err, tc.want)
			}
		})
	}
}

// Pipe carries both directions and a half-close each way.
func TestPipe(t *testing.T) {
	pair := func() (near, far *net.TCPConn) {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		defer ln.Close()
		near, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
		require.NoError(t, err)
		far, err = ln.AcceptTCP()
		require.NoError(t, err)
		t.Cleanup(func() { near.Close(); far.Close() })
		return near, far
	}
	a, aPeer := pair()
	b, bPeer := pair()
	type result struct {
		sent, received int64
		err            error
	}
	done := make(chan result, 1)
	go func() {
		s, r, err := qbeecompat.Pipe(aPeer, bPeer)
		done <- result{s, r, err}
	}()

	_ = a.SetDeadline(time.Now().Add(30 * time.Second))
	_ = b.SetDeadline(time.Now().Add(30 * time.Second))
	_, err := io.WriteString(a, "request")
	require.NoError(t, err)
	require.NoError(t, a.CloseWrite())
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	require.Equal(t, "request", string(got))
	_, err = io.WriteString(b, "a longer reply") // after a's half-close
	require.NoError(t, err)
	require.NoError(t, b.CloseWrite())
	got, err = io.ReadAll(a)
	require.NoError(t, err)
	require.Equal(t, "a longer reply", string(got))

	select {
	case r := <-done:
		require.NoError(t, r.err)
		if r.sent != 7 || r.received != 14 {
			t.Errorf("got sent %d, received %d; want 7, 14", r.sent, r.received)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Pipe did not return after both directions ended")
	}
}

// A program written against the reference dials /device/<device ID> with
// the bare token, as the reference does; the edge serves it.
func TestNewClientOnTheReferencePath(t *testing.T) {
	upper := upperServer(t)
	_, dev, edge := qbeecompat.NewEdgeMock(t)
	dev.WithHandler(qbeecompat.MessageTypeTCPTunnel, qbeecompat.HandleTCPTunnel)
	ctx := ctxT(t)
	c, err := qbeecompat.NewClient(ctx, edge.URL()+"/device/"+mock.DefaultDeviceID, edge.Native().Token(), edge.ClientTLS())
	require.NoError(t, err)
	defer c.Close()
	ln, err := c.OpenTCPTunnel(ctx, "127.0.0.1:0", upper)
	require.NoError(t, err)
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	if got, want := halfCloseExchange(t, conn, "bare token"), "BARE TOKEN"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
