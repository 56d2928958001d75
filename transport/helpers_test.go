package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLong bounds every wait in these tests. It only guards against hangs;
// no test asserts on elapsed time.
const waitLong = 20 * time.Second

// testLogger writes through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

// broker is a minimal edge for transport tests: one device endpoint, a
// client endpoint that splices every client stream to a new stream on the
// device session (opening message and answer included), and controls to
// restart it or send a GoAway. It keeps its address across restarts.
type broker struct {
	t    testing.TB
	tls  *tls.Config
	cfg  *transport.Config
	addr string
	url  string

	mu sync.Mutex
	// mu guards the following.
	srv      *http.Server
	dev      *transport.Session
	devCh    chan *transport.Session
	sessions map[*transport.Session]struct{}
	clients  []*transport.Session

	wg sync.WaitGroup // serve loops, accept loops and splices
}

func newBroker(t testing.TB, cfg *transport.Config) (*broker, *certstest.PKI) {
	t.Helper()
	pki := certstest.New(t)
	b := &broker{t: t, tls: pki.EdgeTLS(), cfg: cfg, devCh: make(chan *transport.Session, 16),
		sessions: make(map[*transport.Session]struct{})}
	b.start("127.0.0.1:0")
	t.Cleanup(b.stop)
	return b, pki
}

func (b *broker) start(addr string) {
	b.t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(b.t, err)
	b.addr = ln.Addr().String()
	b.url = "https://" + b.addr
	mux := http.NewServeMux()
	mux.HandleFunc("/device", b.serveDevice)
	mux.HandleFunc("/client/", b.serveClient)
	srv := &http.Server{Handler: mux, ErrorLog: quietLog}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = srv.Serve(tls.NewListener(ln, b.tls))
	}()
}

// stop closes the listener and every session and waits for all loops.
func (b *broker) stop() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	for s := range b.sessions {
		s.Close()
	}
	b.dev = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	b.wg.Wait()
}

// restart stops the broker and listens again on the same address.
func (b *broker) restart() {
	b.stop()
	b.start(b.addr)
}

func (b *broker) track(s *transport.Session) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		s.Close()
		return false
	}
	b.sessions[s] = struct{}{}
	return true
}

func (b *broker) serveDevice(w http.ResponseWriter, r *http.Request) {
	s, err := transport.Upgrade(w, r, b.cfg)
	if err != nil || !b.track(s) {
		return
	}
	b.mu.Lock()
	b.dev = s
	b.mu.Unlock()
	b.devCh <- s
}

// device waits for the next device session.
func (b *broker) device(t testing.TB) *transport.Session {
	t.Helper()
	select {
	case s := <-b.devCh:
		return s
	case <-time.After(waitLong):
		t.Fatal("no device connected to the broker")
		return nil
	}
}

func (b *broker) serveClient(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	s, err := transport.Upgrade(w, r, b.cfg)
	if err != nil || !b.track(s) {
		return
	}
	b.mu.Lock()
	b.clients = append(b.clients, s)
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			cs, err := s.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			dev := b.dev
			b.mu.Unlock()
			if dev == nil {
				_ = wire.WriteError(cs, "device not connected")
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
}

// goAway sends a GoAway to the current device session.
func (b *broker) goAway(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	dev := b.dev
	b.mu.Unlock()
	require.NotNil(t, dev, "no device session")
	st, err := dev.Open()
	require.NoError(t, err)
	require.NoError(t, wire.WriteMessage(st, wire.MsgGoAway, nil))
	st.Close()
}

// startDevice runs a DeviceClient against b with a TCP handler and fast
// backoff, and waits until it is connected.
func startDevice(t testing.TB, b *broker, pki *certstest.PKI, cfg *transport.Config, handlers map[wire.MsgType]device.Handler) *device.Client {
	t.Helper()
	var logger *slog.Logger // benchmarks run quiet
	if _, ok := t.(*testing.T); ok {
		logger = testLogger(t)
	}
	dc := &device.Client{URL: b.url + "/device", TLSConfig: pki.DeviceTLS(pki.Device("d1")), Config: cfg, Logger: logger}
	dc.BackoffInitial = 10 * time.Millisecond
	dc.BackoffMax = 50 * time.Millisecond
	dc.DrainTimeout = waitLong
	dc.Handle(wire.MsgTCP, tcpHandler)
	for typ, h := range handlers {
		dc.Handle(typ, h)
	}
	require.NoError(t, dc.Start(context.Background()))
	t.Cleanup(func() { dc.Close() })
	select {
	case <-dc.Ready():
	case <-time.After(waitLong):
		t.Fatal("device never connected")
	}
	b.device(t)
	return dc
}

// tcpHandler is the device side of a TCP tunnel.
func tcpHandler(ctx context.Context, st *transport.Stream, payload []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", string(payload))
	if err != nil {
		_ = wire.WriteError(st, err.Error())
		return nil
	}
	if err := wire.WriteOK(st, nil); err != nil {
		c.Close()
		return nil
	}
	_, _, _ = transport.Splice(ctx, st, c, nil)
	return nil
}

func dialClient(t testing.TB, b *broker, pki *certstest.PKI, cfg *transport.Config) *client.Client {
	t.Helper()
	cl, err := (&client.Dialer{Edge: b.url, Token: "tok", TLSConfig: pki.ClientTLS(), Config: cfg}).Dial(testCtx(t), "d1")
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// patternAfterEOF reads the whole request, then answers with a response
// whose size the request's first 4 bytes give (big endian), filled with a
// pattern derived from the request, and closes.
func patternAfterEOF(c *net.TCPConn) {
	req, err := io.ReadAll(c)
	if err != nil || len(req) < 4 {
		return
	}
	n := int(req[0])<<24 | int(req[1])<<16 | int(req[2])<<8 | int(req[3])
	_, _ = c.Write(pattern(req[4], n))
}

// pattern returns n bytes starting from seed, so that a lost or shifted
// range shows.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i) + byte(i>>8)
	}
	return b
}

// isClosed reports errors that only say the peer went away.
func isClosed(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, transport.ErrSessionClosed)
}

// quietLog keeps http.Server's handshake complaints (expected in tests of
// refused certificates) out of the test output.
var quietLog = log.New(io.Discard, "", 0)
