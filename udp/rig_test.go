package udp_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
	"github.com/tetherhq/tether/udp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger writes through t.Log until the test's clean-up is over;
// benchmarks discard.
func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	w := &tWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) }) // runs after every later clean-up
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// broker is a minimal edge over real TLS: one device endpoint, one client
// endpoint, and every client stream spliced to a new stream on the device.
type broker struct {
	url string
	srv *http.Server
	wg  sync.WaitGroup

	mu       sync.Mutex
	dev      *transport.Session
	sessions []*transport.Session
}

func newBroker(t testing.TB, tc *tls.Config) *broker {
	b := &broker{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	require.NoError(t, err)
	b.url = "https://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.dev = s
		b.sessions = append(b.sessions, s)
		b.mu.Unlock()
	})
	mux.HandleFunc("/client/", func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.sessions = append(b.sessions, s)
		dev := b.dev
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				cs, err := s.Accept()
				if err != nil {
					return
				}
				if dev == nil {
					cs.Close()
					continue
				}
				ds, err := dev.Open()
				if err != nil {
					cs.Close()
					continue
				}
				b.wg.Add(1)
				go func() {
					defer b.wg.Done()
					_, _, _ = transport.Splice(context.Background(), cs, ds, nil)
				}()
			}
		}()
	})
	b.srv = &http.Server{Handler: mux, ErrorLog: nil}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = b.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		b.srv.Close()
		b.mu.Lock()
		for _, s := range b.sessions {
			s.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

// rig is a client session and a device serving UDP tunnels, joined by a
// real edge (mock.EdgeMock) or, for hand-built opening messages the edge
// would refuse itself, by the raw broker.
type rig struct {
	client *client.Client
	dev    *udp.Handler
}

// newRig joins a client and a device through a real edge over TLS.
func newRig(t testing.TB, cfg udp.DeviceConfig) *rig {
	t.Helper()
	var opts mock.Options
	if _, ok := t.(*testing.B); ok {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := mock.New(t, opts)
	dc := m.DeviceClientWithID(mock.DefaultDeviceID)
	dev := &udp.Handler{Config: cfg, Logger: testLogger(t)}
	dc.Handle(wire.MsgUDP, dev.Serve)
	t.Cleanup(func() { dev.Close() })
	cl := m.ClientFor(mock.DefaultDeviceID)
	return &rig{client: cl, dev: dev}
}

// newRawRig joins a client and a device through the raw broker, which
// passes any opening message to the device untouched.
func newRawRig(t testing.TB, cfg udp.DeviceConfig) *rig {
	t.Helper()
	dev := &udp.Handler{Config: cfg, Logger: testLogger(t)}
	t.Cleanup(func() { dev.Close() })
	r := newRawRigWith(t, dev.Serve)
	r.dev = dev
	return r
}

// newRawRigWith is newRawRig with a hand-written device handler for UDP
// streams, to play a misbehaving device.
func newRawRigWith(t testing.TB, h device.Handler) *rig {
	t.Helper()
	pki := certstest.New(t)
	b := newBroker(t, pki.EdgeTLS())

	dc := &device.Client{URL: b.url + "/device", TLSConfig: pki.DeviceTLS(pki.Device("d1")), Config: nil, Logger: nil}
	dc.Handle(wire.MsgUDP, h)
	require.NoError(t, dc.Start(context.Background()))
	t.Cleanup(func() { dc.Close() })
	// The device is ready once the broker holds its session: its Ready
	// fires at the 101, a moment before the broker registers it.
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.dev != nil
	}, 20*time.Second, 5*time.Millisecond, "device did not connect to the broker")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := (&client.Dialer{Edge: b.url, Token: "token", TLSConfig: pki.ClientTLS(), Config: nil}).Dial(ctx, "d1")
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return &rig{client: cl}
}

// listen starts l (nil: a zero Listener) on 127.0.0.1:0 towards remote
// through the rig's client, closed at cleanup.
func (r *rig) listen(t testing.TB, remote string, l *udp.Listener) *udp.Listener {
	t.Helper()
	if l == nil {
		l = &udp.Listener{}
	}
	l.Opener, l.Remote = r.client, remote
	if l.Logger == nil {
		l.Logger = testLogger(t)
	}
	require.NoError(t, l.Start(context.Background()))
	t.Cleanup(func() { l.Close() })
	return l
}

// udpServer is a remote UDP service on loopback; reply decides the answer
// (nil: none) to each datagram.
type udpServer struct {
	conn *net.UDPConn
	done chan struct{}
}

func newUDPServer(t testing.TB, addr string, reply func(from *net.UDPAddr, data []byte) []byte) *udpServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", mustUDPAddr(t, addr))
	require.NoError(t, err)
	_ = conn.SetReadBuffer(4 << 20)
	s := &udpServer{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 70000)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if out := reply(from, buf[:n]); out != nil {
				_, _ = conn.WriteToUDP(out, from)
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

func (s *udpServer) addr() string { return s.conn.LocalAddr().String() }
func (s *udpServer) port() int    { return s.conn.LocalAddr().(*net.UDPAddr).Port }

func mustUDPAddr(t testing.TB, s string) *net.UDPAddr {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", s)
	require.NoError(t, err)
	return a
}

// localPeer is a local UDP client socket on 127.0.0.1.
func localPeer(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", mustUDPAddr(t, "127.0.0.1:0"))
	require.NoError(t, err)
	_ = c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// readFrom reads one datagram within a generous deadline.
func readFrom(t testing.TB, c *net.UDPConn) ([]byte, *net.UDPAddr) {
	t.Helper()
	buf := make([]byte, 70000)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, from, err := c.ReadFromUDP(buf)
	require.NoError(t, err, "no datagram arrived")
	return buf[:n], from
}
