package testbroker

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// Token is the bearer token the Broker accepts from clients.
const Token = "tok"

// DeviceID is the device that StartDevice connects and DialClient asks for.
// The Broker has one device endpoint and ignores the ID in client URLs.
const DeviceID = "d1"

// Broker is a minimal edge for tests: one device endpoint (/device), a
// client endpoint (/client/<id>, bearer Token) that splices every client
// stream to a new stream on the current device session, and controls to
// stop, restart, drop clients or send a GoAway. It keeps its address
// across restarts. Unlike the real edge it checks nothing but the token:
// opening messages, answers and bytes all pass through the splice.
type Broker struct {
	t    testing.TB
	pki  *certstest.PKI
	tls  *tls.Config
	cfg  *transport.Config
	addr string

	mu sync.Mutex
	// mu guards the following.
	srv         *http.Server
	dev         *transport.Session
	devConnects int
	sessions    map[*transport.Session]struct{}
	clients     []*transport.Session

	devCh chan *transport.Session // every device session, for Device
	wg    sync.WaitGroup          // serve loops, accept loops and splices
}

// New starts a Broker on 127.0.0.1 with a fresh PKI; cfg tunes its
// sessions (nil means transport defaults). It is stopped when the test
// ends.
func New(t testing.TB, cfg *transport.Config) *Broker {
	t.Helper()
	pki := certstest.New(t)
	b := &Broker{t: t, pki: pki, tls: pki.EdgeTLS(), cfg: cfg, addr: "127.0.0.1:0",
		devCh: make(chan *transport.Session, 64), sessions: make(map[*transport.Session]struct{})}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// PKI returns the broker's PKI: its CA signs the broker's certificate and
// the devices'.
func (b *Broker) PKI() *certstest.PKI { return b.pki }

// Addr returns the broker's host:port.
func (b *Broker) Addr() string { return b.addr }

// URL returns the broker's base URL, https://127.0.0.1:port, for a
// client.Dialer.
func (b *Broker) URL() string { return "https://" + b.addr }

// DeviceURL returns the device endpoint, for a device.Client.
func (b *Broker) DeviceURL() string { return b.URL() + "/device" }

// Start listens on the broker's address again after Stop. New calls it
// once.
func (b *Broker) Start() {
	b.t.Helper()
	ln, err := net.Listen("tcp", b.addr)
	require.NoError(b.t, err)
	b.addr = ln.Addr().String()
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

// Stop closes the listener and every session, and waits for every
// goroutine of the broker. It is idempotent.
func (b *Broker) Stop() {
	// The listener goes first: a peer that sees its session end must not
	// reach this broker again by redialing before it is gone. Sessions
	// that arrive meanwhile are closed by track.
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	b.mu.Lock()
	for s := range b.sessions {
		s.Close()
	}
	b.dev = nil
	b.mu.Unlock()
	b.wg.Wait()
}

// Restart stops the broker and listens again on the same address.
func (b *Broker) Restart() {
	b.Stop()
	b.Start()
}

// CloseClients closes every client session; the device session stays.
func (b *Broker) CloseClients() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.clients {
		s.Close()
	}
}

// track records s, or closes it when the broker is stopped.
func (b *Broker) track(s *transport.Session) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		s.Close()
		return false
	}
	b.sessions[s] = struct{}{}
	return true
}

func (b *Broker) serveDevice(w http.ResponseWriter, r *http.Request) {
	s, err := transport.Upgrade(w, r, b.cfg)
	if err != nil || !b.track(s) {
		return
	}
	b.mu.Lock()
	b.dev = s
	b.devConnects++
	b.mu.Unlock()
	select {
	case b.devCh <- s:
	default: // nobody waits for this many sessions
	}
}

// Device waits for the next device session (the first one after New, or
// the one after a reconnect) and returns it.
func (b *Broker) Device(t testing.TB) *transport.Session {
	t.Helper()
	select {
	case s := <-b.devCh:
		return s
	case <-time.After(WaitLong):
		t.Fatal("no device connected to the broker")
		return nil
	}
}

// DeviceSession returns the current device session, or nil.
func (b *Broker) DeviceSession() *transport.Session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dev
}

// DeviceConnects returns how many device sessions the broker has upgraded.
func (b *Broker) DeviceConnects() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.devConnects
}

// NumClients returns how many client sessions the broker has upgraded.
func (b *Broker) NumClients() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients)
}

func (b *Broker) serveClient(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+Token {
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
			dev := b.DeviceSession()
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

// GoAway sends a GoAway to the current device session.
func (b *Broker) GoAway(t testing.TB) {
	t.Helper()
	dev := b.DeviceSession()
	require.NotNil(t, dev, "no device session")
	st, err := dev.Open()
	require.NoError(t, err)
	require.NoError(t, wire.WriteMessage(st, wire.MsgGoAway, nil))
	st.Close()
}

// StartDevice runs a device.Client for DeviceID against b, with fast
// backoff, TCPHandler for TCP streams and the given handlers (which may
// replace it), and waits until the broker has its session. cfg tunes the
// device's session. The device is closed when the test ends.
func (b *Broker) StartDevice(t testing.TB, cfg *transport.Config, handlers map[wire.MsgType]device.Handler) *device.Client {
	t.Helper()
	var logger *slog.Logger // benchmarks run quiet
	if _, ok := t.(*testing.T); ok {
		logger = Logger(t)
	}
	dc := &device.Client{URL: b.DeviceURL(), TLSConfig: b.pki.DeviceTLS(b.pki.Device(DeviceID)), Config: cfg, Logger: logger,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, DrainTimeout: WaitLong}
	dc.Handle(wire.MsgTCP, TCPHandler)
	for typ, h := range handlers {
		dc.Handle(typ, h)
	}
	require.NoError(t, dc.Start(context.Background()))
	t.Cleanup(func() { dc.Close() })
	select {
	case <-dc.Ready():
	case <-time.After(WaitLong):
		t.Fatal("device never connected")
	}
	b.Device(t)
	return dc
}

// Dialer returns a client.Dialer for b with the broker's token and CA; cfg
// tunes the session.
func (b *Broker) Dialer(cfg *transport.Config) *client.Dialer {
	return &client.Dialer{Edge: b.URL(), Token: Token, TLSConfig: b.pki.ClientTLS(), Config: cfg}
}

// DialClient dials a client session to DeviceID through b. It is closed
// when the test ends.
func (b *Broker) DialClient(t testing.TB, cfg *transport.Config) *client.Client {
	t.Helper()
	cl, err := b.Dialer(cfg).Dial(Ctx(t), DeviceID)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TCPHandler is a bare device side of a TCP tunnel: it connects to the
// payload's host:port, whatever it is, answers, and splices. Tests of the
// real one (tcp.Handler) register it instead.
func TCPHandler(ctx context.Context, st *transport.Stream, payload []byte) error {
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

// quietLog keeps http.Server's handshake complaints (expected in tests of
// refused certificates) out of the test output.
var quietLog = log.New(io.Discard, "", 0)
