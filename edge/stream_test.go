package edge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

func TestTunnelAndAudit(t *testing.T) {
	m := newEdge(t, mock.Options{})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, tcpHandler)
	echo := testutil.TCPServer(t, testutil.LineEcho)
	c := m.ClientFor("d-1")
	got, err := roundTrip(t, c, echo, strings.Repeat("x", 100_000))
	require.NoError(t, err)
	require.Equal(t, 100_000, len(got))

	require.Eventually(t, func() bool { return len(eventsOf(m, edge.EventStreamClose)) == 1 }, 20*time.Second, 10*time.Millisecond)
	e := eventsOf(m, edge.EventStreamClose)[0]
	require.Equal(t, "ops", e.Client)
	require.Equal(t, "d-1", e.Device)
	require.Equal(t, "tcp", e.Type)
	require.Equal(t, echo, e.Target)
	require.Equal(t, "ok", e.Result)
	require.Equal(t, int64(100_000), e.BytesUp)
	require.Equal(t, int64(100_000), e.BytesDown)
	require.Len(t, eventsOf(m, edge.EventStreamOpen), 1)
	require.Len(t, eventsOf(m, edge.EventClientOpen), 1)
}

func TestTargetOutsideAllowListIsDeniedAndAudited(t *testing.T) {
	m := newEdge(t, mock.Options{Token: limitedToken})
	dev := m.DeviceClientWithID("d-1")
	reached := make(chan string, 10)
	dev.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		reached <- string(p)
		_ = wire.WriteError(st, "test handler")
		return nil
	})
	c := m.ClientFor("d-1")

	for _, tt := range []struct{ name, target, want string }{
		{"other host", "10.0.0.5:25", "not allowed: tcp 10.0.0.5:25 on device d-1 for client limited: its allow.tcp on the edge does not cover it"},
		{"port outside range", "127.0.0.1:2000", "not allowed: tcp 127.0.0.1:2000 on device d-1 for client limited: its allow.tcp on the edge does not cover it"},
		{"hex spelling of a denied host", "0x0a.0.0.5:25", "not allowed: tcp 10.0.0.5:25 on device d-1 for client limited: its allow.tcp on the edge does not cover it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.OpenStream(ctxT(t), wire.MsgTCP, []byte(tt.target))
			var re *wire.RemoteError
			require.True(t, errors.As(err, &re), "got %v; want an Error answer", err)
			require.Equal(t, tt.want, re.Reason)
		})
	}
	for _, tt := range []struct {
		typ  wire.MsgType
		want string
	}{
		{wire.MsgPTY, "not allowed: pty on device d-1 for client limited: its allow.pty on the edge does not cover it"},
		{wire.MsgReload, "not allowed: reload on device d-1 for client limited: its allow.reload on the edge does not cover it"},
		{wire.MsgUDP, "not allowed: udp 127.0.0.1:53 on device d-1 for client limited: its allow.udp on the edge does not cover it"},
	} {
		payload := []byte(`{"cols":80,"rows":24}`)
		if tt.typ == wire.MsgUDP {
			payload = []byte("0:127.0.0.1:53")
		}
		_, _, err := c.OpenStream(ctxT(t), tt.typ, payload)
		var re *wire.RemoteError
		require.True(t, errors.As(err, &re), "%v: got %v; want an Error answer", tt.typ, err)
		require.Equal(t, tt.want, re.Reason)
	}
	select {
	case p := <-reached:
		t.Fatalf("a denied stream reached the device: %q", p)
	default:
	}
	denied := eventsOf(m, edge.EventStreamDeny)
	require.Len(t, denied, 6)
	require.Equal(t, "10.0.0.5:25", denied[0].Target)
	require.Equal(t, "limited", denied[0].Client)
	require.Equal(t, "denied", denied[0].Result)
}

func TestTargetIsCanonicalizedBeforePolicyAndDevice(t *testing.T) {
	m := newEdge(t, mock.Options{})
	dev := m.DeviceClientWithID("d-1")
	got := make(chan string, 10)
	dev.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		got <- "tcp " + string(p)
		_ = wire.WriteOK(st, nil)
		return nil
	})
	dev.Handle(wire.MsgUDP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		got <- "udp " + string(p)
		_ = wire.WriteOK(st, nil)
		return nil
	})
	c := m.ClientFor("d-1")
	for _, tt := range []struct {
		typ       wire.MsgType
		in, wants string
	}{
		{wire.MsgTCP, "127.1:22", "tcp 127.0.0.1:22"},
		{wire.MsgTCP, "0x7f.0.0.1:8080", "tcp 127.0.0.1:8080"},
		{wire.MsgTCP, "0177.0.0.1:80", "tcp 127.0.0.1:80"},
		{wire.MsgTCP, "2130706433:80", "tcp 127.0.0.1:80"},
		{wire.MsgTCP, "[::ffff:127.0.0.1]:80", "tcp 127.0.0.1:80"},
		{wire.MsgUDP, "5353:127.1:53", "udp 5353:127.0.0.1:53"},
		{wire.MsgUDP, "0:[::ffff:7f00:1]:53", "udp 0:127.0.0.1:53"},
	} {
		st, _, err := c.OpenStream(ctxT(t), tt.typ, []byte(tt.in))
		require.NoError(t, err, tt.in)
		st.Close()
		require.Equal(t, tt.wants, <-got)
	}
	for _, junk := range []string{"127.0.0.1:0x16", "127.0.0.1:+22", "127.0.0.1: 22", "127.0.0.1:65536", ":22", "a b:22"} {
		_, _, err := c.OpenStream(ctxT(t), wire.MsgTCP, []byte(junk))
		var re *wire.RemoteError
		require.True(t, errors.As(err, &re), "%q: got %v; want an Error answer", junk, err)
		require.Contains(t, re.Reason, "bad tcp target")
	}
}

func TestUnknownStreamTypeGetsAnError(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1")
	c := m.ClientFor("d-1")
	for _, typ := range []wire.MsgType{0x7f, wire.MsgOK, wire.MsgGoAway} {
		_, _, err := c.OpenStream(ctxT(t), typ, []byte("x"))
		var re *wire.RemoteError
		require.True(t, errors.As(err, &re), "type %v: got %v; want an Error answer", typ, err)
		require.Contains(t, re.Reason, "unknown stream type")
	}
}

func TestDeviceErrorAndSilenceAreRelayed(t *testing.T) {
	m := newEdge(t, mock.Options{})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteError(st, "dial tcp "+string(p)+": connection refused")
		return nil
	})
	dev.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
		return nil
	}) // closes without answering
	c := m.ClientFor("d-1")
	_, _, err := c.OpenStream(ctxT(t), wire.MsgTCP, []byte("127.0.0.1:9"))
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re))
	require.Equal(t, "dial tcp 127.0.0.1:9: connection refused", re.Reason)
	err = c.Reload(ctxT(t))
	require.ErrorIs(t, err, wire.ErrNoAnswer)
}

func TestDeviceOpenedStreamsAreRefused(t *testing.T) {
	m := newEdge(t, mock.Options{})
	kp := m.PKI().Device("d-raw")
	sess, err := transport.Dial(ctxT(t), m.DeviceURL(), "", m.PKI().DeviceTLS(kp), nil)
	require.NoError(t, err)
	defer sess.Close()
	m.WaitDevice("d-raw")
	for i := 0; i < 3; i++ {
		st, err := sess.Open()
		require.NoError(t, err)
		_ = wire.WriteMessage(st, wire.MsgTCP, []byte("127.0.0.1:22"))
		_ = st.SetReadDeadline(time.Now().Add(20 * time.Second))
		// The edge closes the stream without an answer: the device reads
		// EOF, or a reset when its request was still unread at the edge.
		n, err := st.Read(make([]byte, 1))
		require.Zero(t, n, "the edge answered a device-opened stream")
		require.Error(t, err)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "a device-opened stream must be closed by the edge")
		st.Close()
	}
	require.True(t, connected(m, "d-raw"), "refusing a stream must not drop the device")
	require.Len(t, eventsOf(m, edge.EventDeviceStream), 1)
}

func TestNewerDeviceConnectionReplacesTheOlder(t *testing.T) {
	m := newEdge(t, mock.Options{})
	kp := m.PKI().Device("d-1")
	first, err := transport.Dial(ctxT(t), m.DeviceURL(), "", m.PKI().DeviceTLS(kp), nil)
	require.NoError(t, err)
	defer first.Close()
	m.WaitDevice("d-1")
	c := m.ClientFor("d-1") // a client session opened before the replacement
	second, err := transport.Dial(ctxT(t), m.DeviceURL(), "", m.PKI().DeviceTLS(kp), nil)
	require.NoError(t, err)
	defer second.Close()

	ended := make(chan error, 1)
	go func() { _, err := first.Accept(); ended <- err }()
	select {
	case err := <-ended:
		require.Error(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the older session was not closed")
	}
	require.Eventually(t, func() bool {
		ds := m.Server().Devices()
		return len(ds) == 1 && ds[0].RemoteAddr.String() == second.LocalAddr().String()
	}, 20*time.Second, 10*time.Millisecond, "the newer session must hold the ID")
	var reasons []string
	require.Eventually(t, func() bool {
		reasons = nil
		for _, e := range eventsOf(m, edge.EventDeviceDisconnect) {
			reasons = append(reasons, e.Reason)
		}
		return len(reasons) > 0
	}, 20*time.Second, 10*time.Millisecond)
	require.Len(t, reasons, 1)
	require.Contains(t, reasons[0], "replaced by a newer connection from "+second.LocalAddr().String())

	// Streams now go to the newer session.
	go func() {
		st, err := second.Accept()
		if err != nil {
			return
		}
		defer st.Close()
		if _, err := wire.ReadMessage(st); err == nil {
			_ = wire.WriteOK(st, []byte("second"))
		}
	}()
	// Streams of the client session opened before now reach the newer one.
	st, ok, err := c.OpenStream(ctxT(t), wire.MsgReload, nil)
	require.NoError(t, err)
	st.Close()
	require.Equal(t, "second", string(ok))
}

// blockingHandler answers OK and holds the stream until release is closed.
func blockingHandler(release chan struct{}) device.Handler {
	return func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
}

func TestStreamLimits(t *testing.T) {
	m := newEdge(t, mock.Options{Limits: edge.Limits{MaxStreamsPerClientSession: 2, MaxStreamsPerDevice: 3, MaxStreamsPerClientPerDevice: 3}})
	dev := m.DeviceClientWithID("d-1")
	release := make(chan struct{})
	defer close(release)
	dev.Handle(wire.MsgTCP, blockingHandler(release))
	a, b := m.ClientFor("d-1"), m.ClientFor("d-1")
	open := func(c *client.Client) error {
		_, _, err := c.OpenStream(ctxT(t), wire.MsgTCP, []byte("127.0.0.1:1"))
		return err
	}
	require.NoError(t, open(a))
	require.NoError(t, open(a))
	err := open(a)
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "got %v", err)
	require.Contains(t, re.Reason, "too many streams")
	require.Contains(t, re.Reason, "this session")

	require.NoError(t, open(b))
	err = open(b)
	require.True(t, errors.As(err, &re), "got %v", err)
	require.Contains(t, re.Reason, "too many streams")
	require.Contains(t, re.Reason, "device d-1")
	limited := 0
	for _, e := range eventsOf(m, edge.EventStreamDeny) {
		if e.Result == "limit" {
			limited++
		}
	}
	require.Equal(t, 2, limited)
}

func TestOpeningMessageTimeout(t *testing.T) {
	m := newEdge(t, mock.Options{Transport: &transport.Config{OpenTimeout: 200 * time.Millisecond}})
	m.DeviceClientWithID("d-1")
	c := m.ClientFor("d-1")
	st, err := c.Session().Open()
	require.NoError(t, err)
	defer st.Close()
	_, _ = st.Write([]byte{byte(wire.MsgTCP), 0}) // half a header, then silence
	_ = st.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = st.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the edge must close a stream whose opening message does not arrive")
	// The session itself stays usable.
	_, _, err = c.OpenStream(ctxT(t), wire.MsgReload, nil)
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re) || errors.Is(err, wire.ErrNoAnswer), "got %v", err)
}

func TestSlowHeadersAreCut(t *testing.T) {
	m := newEdge(t, mock.Options{Transport: &transport.Config{HandshakeTimeout: time.Second}})
	addr := strings.TrimPrefix(m.URL(), "https://")

	t.Run("tls handshake never starts", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the edge kept a silent connection open")
	})
	t.Run("headers trickle", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, m.ClientTLS())
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET /device HTTP/1.1\r\nHost: x\r\n")
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = io.ReadAll(c)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the edge kept a slow request open: %v", err)
	})
	t.Run("headers too large", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, m.ClientTLS())
		require.NoError(t, err)
		defer c.Close()
		big := "GET /device HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 2*edge.DefaultMaxHeaderBytes) + "\r\n\r\n"
		go io.WriteString(c, big)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})
}

func TestUpgradeRateLimitPerIP(t *testing.T) {
	m := newEdge(t, mock.Options{Limits: edge.Limits{UpgradeRate: 0.001, UpgradeBurst: 3}})
	codes := make([]int, 5)
	for i := range codes {
		codes[i], _ = dialStatus(t, m, "/client/d-1", "Bearer wrong", m.ClientTLS())
	}
	require.Equal(t, []int{401, 401, 401, 429, 429}, codes)
}

// One client fills every slot of a device with streams it never reads; the
// edge resets them once they stall, and another client gets through.
func TestStalledClientsDoNotStopOtherClients(t *testing.T) {
	small := &transport.Config{MaxStreamBuffer: 128 << 10, MaxFrameSize: 32 << 10, MaxStreams: 32}
	metrics := &edge.Metrics{}
	m := newEdge(t, mock.Options{
		Transport:    small,
		DeviceConfig: small,
		ClientConfig: small,
		// One client may take the whole device here: this test is about
		// stall resets, not about shares.
		Limits:  edge.Limits{StallTimeout: time.Second, MaxStreamsPerClientPerDevice: 32},
		Metrics: metrics,
	})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, tcpHandler)
	// The PTY streams send nothing until every open has been answered: an
	// idle stream is never reset, so the cap is measured exactly, however
	// long the opens take.
	flood := make(chan struct{})
	dev.Handle(wire.MsgPTY, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		select {
		case <-flood:
		case <-ctx.Done():
			return nil
		}
		buf := make([]byte, 32<<10)
		for ctx.Err() == nil {
			// After the edge resets its end, the device learns it when
			// its writes fail or stop making progress.
			_ = st.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := st.Write(buf); err != nil {
				return nil
			}
		}
		return nil
	})
	echo := testutil.TCPServer(t, testutil.LineEcho)
	stalled := m.ClientFor("d-1")
	const n = 64 // twice the device's stream cap
	var wg sync.WaitGroup
	var mu sync.Mutex
	var opened []*transport.Stream
	refused := 0
	defer func() {
		for _, st := range opened {
			st.Close()
		}
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, err := stalled.OpenStream(ctxT(t), wire.MsgPTY, []byte(`{"cols":80,"rows":24}`))
			mu.Lock()
			defer mu.Unlock()
			var re *wire.RemoteError
			switch {
			case err == nil:
				opened = append(opened, st) // never read: the stream stalls
			case errors.As(err, &re) && strings.Contains(re.Reason, "too many streams"):
				refused++
			default:
				t.Errorf("open: got %v; want a stream or a too-many-streams refusal", err)
			}
		}()
	}
	wg.Wait()
	require.Len(t, opened, 32, "the device's stream cap should admit exactly 32 streams")
	require.Equal(t, n-32, refused)
	close(flood)

	// Another client on the same device gets through once the stalled
	// streams are reset, freeing their slots.
	other := m.ClientFor("d-1")
	require.Eventually(t, func() bool {
		got, err := roundTrip(t, other, echo, "still here")
		if err != nil {
			t.Logf("other client: %v", err)
		}
		return err == nil && got == "still here"
	}, 30*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		for _, e := range eventsOf(m, edge.EventStreamClose) {
			if e.Result == "reset_stalled" {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "no stalled stream was reset: %+v", eventsOf(m, edge.EventStreamClose))
	require.Greater(t, metric(t, metrics, "tether_edge_stalled_streams_reset_total"), 0.0)
}

// switchProxy forwards TCP connections to whichever backend is current: a
// stand-in for the load balancer in front of several edges.
type switchProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	backend string
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newSwitchProxy(t *testing.T, backend string) *switchProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &switchProxy{ln: ln, backend: backend}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			b := p.backend
			p.mu.Unlock()
			u, err := net.Dial("tcp", b)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			p.wg.Add(1)
			go func() { defer p.wg.Done(); _, _, _ = transport.Splice(context.Background(), c, u, nil) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) set(backend string) {
	p.mu.Lock()
	p.backend = backend
	p.mu.Unlock()
}

func TestGoAwayDrainsAndDeviceMovesToAnotherEdge(t *testing.T) {
	a := newEdge(t, mock.Options{})
	b := newEdge(t, mock.Options{PKI: a.PKI()}) // a second edge behind the same load balancer
	lb := newSwitchProxy(t, strings.TrimPrefix(a.URL(), "https://"))

	kp := a.PKI().Device("d-1")
	tc := a.PKI().DeviceTLS(kp)
	tc.ServerName = "127.0.0.1"
	dev := &device.Client{URL: "https://" + lb.ln.Addr().String() + "/device", TLSConfig: tc, Config: nil, Logger: nil}
	dev.BackoffInitial, dev.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	dev.Handle(wire.MsgTCP, tcpHandler)
	require.NoError(t, dev.Start(context.Background()))
	defer dev.Close()
	a.WaitDevice("d-1")

	// A live stream through edge a.
	echo := lineEcho(t)
	c := a.ClientFor("d-1")
	conn, err := tcp.Dial(ctxT(t), c, echo)
	require.NoError(t, err)
	defer conn.Close()
	r := bufio.NewReader(conn)
	say := func(s string) {
		t.Helper()
		_, err := io.WriteString(conn, s+"\n")
		require.NoError(t, err)
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, s+"\n", line)
	}
	say("before")

	lb.set(strings.TrimPrefix(b.URL(), "https://"))
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.HTTPServer().Shutdown(ctx)
		shut <- a.Server().Shutdown(ctx)
	}()

	// Wait until edge a is draining: /readyz turns 503.
	require.Eventually(t, func() bool {
		rec := httptest.NewRecorder()
		a.Server().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code == http.StatusServiceUnavailable
	}, 20*time.Second, 10*time.Millisecond)

	// The in-flight stream keeps working during the drain.
	say("during the drain")
	select {
	case <-shut:
		t.Fatal("Shutdown returned while a stream was open")
	default:
	}
	// New streams on edge a are refused while it drains.
	_, _, err = c.OpenStream(ctxT(t), wire.MsgTCP, []byte(echo))
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "got %v", err)
	require.Contains(t, re.Reason, "shutting down")

	conn.Close()
	select {
	case err := <-shut:
		require.NoError(t, err, "the drain should end when the last stream closes")
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after the last stream closed")
	}

	// The device followed the GoAway to edge b, where it serves again.
	b.WaitDevice("d-1")
	got, err := roundTrip(t, b.ClientFor("d-1"), echo, "after the move")
	require.NoError(t, err)
	require.Equal(t, "after the move", got)
}

// lineEcho echoes each line back at once.
func lineEcho(t testing.TB) string {
	return testutil.TCPServer(t, testutil.LineEcho)
}

// With the reference 128 KiB windows, 16-32 stalled streams used to freeze a
// whole device session. Here nearly every slot of the device holds a stream
// nobody reads (and no reset comes to help), and a bulk transfer of another
// client on the same device still runs to the end.
func TestStalledStreamsDoNotFreezeTheDeviceSession(t *testing.T) {
	small := &transport.Config{MaxStreamBuffer: 128 << 10, MaxFrameSize: 32 << 10, MaxStreams: 32}
	m := newEdge(t, mock.Options{
		Transport: small, DeviceConfig: small, ClientConfig: small,
		Limits: edge.Limits{MaxStreamsPerClientSession: 16, MaxStreamsPerClientPerDevice: 32, StallTimeout: 10 * time.Minute},
	})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, tcpHandler)
	dev.Handle(wire.MsgPTY, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		buf := make([]byte, 32<<10)
		for ctx.Err() == nil {
			_ = st.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := st.Write(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue // stalled, as intended: keep the window full
				}
				return nil
			}
		}
		return nil
	})
	var streams []*transport.Stream
	defer func() {
		for _, st := range streams {
			st.Close()
		}
	}()
	for _, c := range []*client.Client{m.ClientFor("d-1"), m.ClientFor("d-1")} {
		for i := 0; i < 15; i++ {
			st, _, err := c.OpenStream(ctxT(t), wire.MsgPTY, []byte(`{"cols":80,"rows":24}`))
			require.NoError(t, err)
			streams = append(streams, st) // never read
		}
	}
	// Give the stalled streams time to fill their windows.
	require.Eventually(t, func() bool {
		for _, d := range m.Server().Devices() {
			if d.ID == "d-1" && d.Streams() == 30 {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)

	echo := testutil.TCPServer(t, testutil.LineEcho)
	payload := strings.Repeat("0123456789abcdef", 256<<10) // 4 MiB, many windows' worth
	got, err := roundTrip(t, m.ClientFor("d-1"), echo, payload)
	require.NoError(t, err)
	require.Equal(t, len(payload), len(got))
	require.True(t, got == payload, "the bulk transfer was corrupted")
}

// One client identity, across its sessions, gets a share of a device's
// streams: it cannot lock the other clients out of the device.
func TestOneClientCannotTakeEveryStreamOfADevice(t *testing.T) {
	m := newEdge(t, mock.Options{Limits: edge.Limits{MaxStreamsPerDevice: 4}}) // a share of 2
	dev := m.DeviceClientWithID("d-1")
	release := make(chan struct{})
	defer close(release)
	dev.Handle(wire.MsgUDP, blockingHandler(release)) // idle UDP tunnels
	open := func(c *client.Client) error {
		_, _, err := c.OpenStream(ctxT(t), wire.MsgUDP, []byte("0:127.0.0.1:53"))
		return err
	}
	ops1, ops2 := clientWithToken(t, m, "d-1", opsToken), clientWithToken(t, m, "d-1", opsToken)
	require.NoError(t, open(ops1))
	require.NoError(t, open(ops2))
	err := open(ops1)
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "got %v; want a refusal", err)
	require.Equal(t, "too many streams: client ops already has 2 open to device d-1, its share of the device; close some and retry", re.Reason)

	peer := clientWithToken(t, m, "d-1", peerToken)
	require.NoError(t, open(peer), "another client must still reach the device")
	require.NoError(t, open(peer))
	require.True(t, errors.As(open(peer), &re))
	require.Contains(t, re.Reason, "device d-1 has 4 open", "the device is full: both shares are taken")
}

// A client session that opens no stream within FirstStreamTimeout of its
// upgrade is closed and audited; one that opened a stream is not.
func TestClientSessionWithoutStreamsIsClosed(t *testing.T) {
	const timeout = 2 * time.Second
	m := newEdge(t, mock.Options{Limits: edge.Limits{FirstStreamTimeout: timeout}})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		return nil
	})
	busy := m.ClientFor("d-1")
	require.NoError(t, busy.Reload(ctxT(t)))
	idle := m.ClientFor("d-1") // upgraded after busy: its deadline comes later

	require.True(t, closed(idle), "the idle session was kept open")
	select {
	case <-busy.Done():
		t.Fatal("a session that opened a stream was closed")
	default:
	}
	require.NoError(t, busy.Reload(ctxT(t)))
	require.Eventually(t, func() bool { return len(eventsOf(m, edge.EventClientClose)) == 1 }, 20*time.Second, 10*time.Millisecond)
	e := eventsOf(m, edge.EventClientClose)[0]
	require.Equal(t, "no_stream", e.Result)
	require.Equal(t, "no stream opened within 2s of the upgrade", e.Reason)
}

// A device that serves fewer streams than the edge allows says so on its
// upgrade, and a client's share is half of what the device serves: one
// client cannot fill a small device and lock the others out.
func TestClientShareFollowsWhatTheDeviceServes(t *testing.T) {
	m := newEdge(t, mock.Options{DeviceConfig: &transport.Config{MaxStreams: 4}}) // the edge allows 128
	dev := m.DeviceClientWithID("d-1")
	release := make(chan struct{})
	defer close(release)
	dev.Handle(wire.MsgUDP, blockingHandler(release))
	open := func(c *client.Client) error {
		_, _, err := c.OpenStream(ctxT(t), wire.MsgUDP, []byte("0:127.0.0.1:53"))
		return err
	}
	ops := clientWithToken(t, m, "d-1", opsToken)
	require.NoError(t, open(ops))
	require.NoError(t, open(ops))
	var re *wire.RemoteError
	require.True(t, errors.As(open(ops), &re), "a third stream is refused")
	require.Contains(t, re.Reason, "client ops already has 2 open to device d-1")

	peer := clientWithToken(t, m, "d-1", peerToken)
	require.NoError(t, open(peer), "another client must still reach the device")
	require.NoError(t, open(peer))
}

// TestOpenEndsWithItsClient: a client that goes away while the device has
// not answered its open resets the device's stream at once, not at the
// open timeout, so the device stops working on it.
func TestOpenEndsWithItsClient(t *testing.T) {
	m := newEdge(t, mock.Options{Transport: &transport.Config{OpenTimeout: time.Minute}})
	dev := m.DeviceClientWithID("d-1")
	h, started, ended := unanswered()
	dev.Handle(wire.MsgReload, h)
	c := m.ClientFor("d-1")
	done := make(chan error, 1)
	go func() { done <- c.Reload(context.Background()) }()
	waitFor(t, started, 20*time.Second, "the device's handler did not start")
	require.NoError(t, c.Close())
	err := waitFor(t, ended, 20*time.Second, "the device's stream did not end after its client went away")
	require.ErrorIs(t, err, transport.ErrStreamReset)
	require.Error(t, waitFor(t, done, 20*time.Second, "Reload did not return"))
	require.Eventually(t, func() bool {
		for _, e := range eventsOf(m, edge.EventStreamDeny) {
			if e.Type == "reload" && e.Result == "closed" {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "no stream_deny record with result closed: %v", m.AuditEvents())
}
