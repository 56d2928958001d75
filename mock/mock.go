// Package mock runs a real Tether edge inside a test, so that code built on
// Tether's packages meets the broker it will meet in production: the
// edge.Server of tether-edge, on 127.0.0.1, with a throw-away PKI. Devices
// really authenticate with mTLS, clients really send bearer tokens, and the
// edge really checks its policy, splices with half-close and records audit
// events.
//
// NewEdgeMock starts an edge, connects one device (DefaultDeviceID) and one
// client bound to it. Handlers are registered on the device afterwards; they
// are looked up per stream:
//
//	func TestEcho(t *testing.T) {
//		client, device, _ := mock.NewEdgeMock(t)
//		device.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve) // loopback targets only
//		conn, err := tcp.Dial(t.Context(), client, echoAddr)
//		...
//	}
//
// New starts an edge with Options (a policy, limits, session settings) and
// no device; DeviceClientWithID and ClientFor then connect as many devices
// and clients as the test needs.
//
// Both take a T: *testing.T, *testing.B and *testing.F are Ts, and so is any
// harness with Errorf, Fatalf and Cleanup (the Tester of go.qbee.io/transport
// has exactly these). Everything the mock starts is closed through
// T.Cleanup. When the T also has a Log method, the logs of the edge and the
// devices go to it; when it has Helper, failures point at the caller's line.
// A T that is a testing.TB gets a certstest.PKI, with its files under
// t.TempDir(); any other T gets the same kind of certificates in memory only,
// and PKI returns nil.
//
// Failures to set up are reported with T.Fatalf. A harness whose Fatalf
// returns, rather than ending the goroutine as testing's does, gets nil
// values back.
package mock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
)

// T is what the mock needs from a test. *testing.T, *testing.B and
// *testing.F implement it, as does any harness with these three methods.
// The mock also uses two optional methods when the T has them:
// Helper() (as testing.TB's) and Log(args ...any), which receives the logs of
// the edge and the devices unless Options.Logger is set.
type T interface {
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// helperT and logT are the optional methods of a T.
type (
	helperT interface{ Helper() }
	logT    interface{ Log(args ...any) }
)

// DefaultDeviceID is the ID of the device NewEdgeMock connects.
const DefaultDeviceID = "device-1"

// Token is the bearer token of the mock's clients.
const Token = "mock-client-token"

// setupTimeout bounds connecting a device or a client in the mock.
const setupTimeout = 30 * time.Second

// Options tune an EdgeMock. The zero value is a permissive edge.
type Options struct {
	// Policy replaces the permissive policy (edge.AllowAll).
	Policy edge.Policy
	// Revoked is the initial revocation list.
	Revoked edge.Revocations
	// Limits and Transport tune the edge. Unless UpgradeRate or
	// UpgradeBurst is set, the mock does not rate-limit upgrades.
	Limits    edge.Limits
	Transport *transport.Config
	// ClientConfig and DeviceConfig tune the sessions of the mock's clients
	// and devices; nil means transport defaults.
	ClientConfig, DeviceConfig *transport.Config
	// Token is the clients' bearer token; empty means Token.
	Token string
	// Logger receives the logs of the edge and the mock's devices; nil
	// sends them to the T's Log method when it has one, and discards them
	// otherwise.
	Logger *slog.Logger
	// Metrics, when set, records the edge's metrics.
	Metrics *edge.Metrics
	// PKI, when set, is used instead of a fresh one: two edges sharing a
	// PKI accept the same devices, as edges behind one load balancer do.
	PKI *certstest.PKI
	// Auditor, when set, receives the edge's audit records instead of the
	// mock's memory (AuditEvents then returns none).
	Auditor edge.Auditor
	// LastSeen, when set, keeps the devices that disconnected for the
	// edge's device list (edge.Server.LastSeen).
	LastSeen edge.LastSeen
	// DeviceAgent is what the mock's devices say about themselves at
	// connect (device.Client.Agent); the zero value says nothing.
	DeviceAgent transport.AgentInfo
	// Web, when set, turns the edge's web terminal on; an empty PublicURL
	// becomes the mock's URL.
	Web *edge.WebConfig
	// Auth, when set, is the edge's sign-in by SSO, user certificates
	// and JWTs (edge.Server.Auth).
	Auth *edge.AuthConfig
}

// EdgeMock is a live edge on loopback.
type EdgeMock struct {
	t     T
	opts  Options
	pki   *certstest.PKI // nil for a T that is not a testing.TB
	ca    *certs.KeyPair // signs the devices' certificates
	pool  *x509.CertPool // holds ca, which also signed the edge's certificate
	srv   *edge.Server
	audit *edge.MemoryAuditor
	hs    *http.Server
	url   string
	log   *slog.Logger

	mu sync.Mutex
	// mu guards the following.
	client *client.Client
	device *device.Client
}

// NewEdgeMock starts an edge, connects a device with the ID DefaultDeviceID
// (no handlers yet: register them with Handle; they are looked up per
// stream) and a client bound to that device. It returns nil values when
// set-up failed and t.Fatalf returned.
func NewEdgeMock(t T) (*client.Client, *device.Client, *EdgeMock) {
	if h, ok := t.(helperT); ok {
		h.Helper()
	}
	m := New(t, Options{})
	if m == nil {
		return nil, nil, nil
	}
	d := m.DeviceClientWithID(DefaultDeviceID)
	if d == nil {
		return nil, nil, nil
	}
	c := m.ClientFor(DefaultDeviceID)
	if c == nil {
		return nil, nil, nil
	}
	m.mu.Lock()
	m.device, m.client = d, c
	m.mu.Unlock()
	return c, d, m
}

// New starts an edge with opts and no device. It returns nil when set-up
// failed and t.Fatalf returned.
func New(t T, opts Options) *EdgeMock {
	if h, ok := t.(helperT); ok {
		h.Helper()
	}
	if opts.Token == "" {
		opts.Token = Token
	}
	log := opts.Logger
	if log == nil {
		log = testLogger(t)
	}
	m := &EdgeMock{t: t, opts: opts, pki: opts.PKI, audit: &edge.MemoryAuditor{}, log: log}
	if m.pki == nil {
		if tb, ok := t.(testing.TB); ok {
			m.pki = certstest.New(tb)
		}
	}
	var edgeCert *certs.KeyPair
	if m.pki != nil {
		m.ca, edgeCert = m.pki.CA, m.pki.Edge
	} else {
		var err error
		if m.ca, edgeCert, err = newPKI(); err != nil {
			t.Fatalf("mock: %v", err)
			return nil
		}
	}
	m.pool = certs.PoolOf(m.ca.Cert)
	// Tests dial many sessions from one address: unless asked, do not
	// rate-limit them.
	if opts.Limits.UpgradeRate == 0 && opts.Limits.UpgradeBurst == 0 {
		opts.Limits.UpgradeRate, opts.Limits.UpgradeBurst = 1e6, 1e6
	}
	policy := opts.Policy
	if policy == nil {
		policy = edge.AllowAll{}
	}
	var auditor edge.Auditor = m.audit
	if opts.Auditor != nil {
		auditor = opts.Auditor
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mock: listen: %v", err)
		return nil
	}
	m.url = "https://" + ln.Addr().String()
	var web *edge.WebConfig
	if opts.Web != nil {
		w := *opts.Web
		if w.PublicURL == "" {
			w.PublicURL = m.url
		}
		web = &w
	}
	m.srv = &edge.Server{
		DeviceCA:  m.pool,
		Policy:    policy,
		Revoked:   opts.Revoked,
		Auditor:   auditor,
		Transport: opts.Transport,
		Limits:    opts.Limits,
		Metrics:   opts.Metrics,
		LastSeen:  opts.LastSeen,
		Logger:    log.With("component", "edge"),
		Web:       web,
		Auth:      opts.Auth,
	}
	m.hs = m.srv.HTTPServer(certs.EdgeTLSConfig(edgeCert.TLSCertificate()))
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := m.hs.Serve(m.srv.Listener(ln, m.hs.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("mock edge stopped serving", "err", err)
		}
	}()
	t.Cleanup(func() {
		m.hs.Close()
		<-served
		m.srv.Close()
	})
	return m
}

// newPKI makes a CA and the edge's certificate, in memory, for a T that
// has no TempDir for certstest's files.
func newPKI() (ca, edgeCert *certs.KeyPair, err error) {
	ca, err = certs.NewCA("Tether Mock CA", certs.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("make the CA: %w", err)
	}
	edgeCert, err = ca.IssueServer([]string{"127.0.0.1", "::1", "localhost"}, certs.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("issue the edge certificate: %w", err)
	}
	return ca, edgeCert, nil
}

// testLogger returns a logger writing to t's Log method until t's clean-up
// is over, or one that discards when t has none.
func testLogger(t T) *slog.Logger {
	lt, ok := t.(logT)
	if !ok {
		return logx.Or(nil)
	}
	tw := &tWriter{t: lt}
	t.Cleanup(func() { tw.done.Store(true) }) // runs after every later cleanup
	return slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// URL is the edge's base URL, https://127.0.0.1:port.
func (m *EdgeMock) URL() string { return m.url }

// DeviceURL is the device endpoint.
func (m *EdgeMock) DeviceURL() string { return m.url + "/device" }

// ClientURL is the client endpoint for device id, the URL a client.Dialer
// dials.
func (m *EdgeMock) ClientURL(id string) string {
	u, err := client.URL(m.url, id)
	if err != nil {
		// m.url is built by New and always parses.
		panic(err)
	}
	return u
}

// ClientTLS returns a client tls.Config that trusts the edge.
func (m *EdgeMock) ClientTLS() *tls.Config { return certs.ClientTLSConfig(m.pool) }

// PKI returns the mock's certstest PKI, to issue more (or broken) device
// certificates and to find its files. It is nil when the mock was started
// with a T that is not a testing.TB and without Options.PKI.
func (m *EdgeMock) PKI() *certstest.PKI { return m.pki }

// Server returns the edge itself, for Reload, Shutdown and Devices.
func (m *EdgeMock) Server() *edge.Server { return m.srv }

// HTTPServer returns the http.Server serving the edge.
func (m *EdgeMock) HTTPServer() *http.Server { return m.hs }

// Token returns the clients' bearer token.
func (m *EdgeMock) Token() string { return m.opts.Token }

// Logger returns the logger of the edge and the mock's devices: Options.Logger,
// or the one writing to the T's Log method. Code under test can log there too.
func (m *EdgeMock) Logger() *slog.Logger { return m.log }

// Client returns the client NewEdgeMock connected (nil after New).
func (m *EdgeMock) Client() *client.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.client
}

// DeviceClient returns the device NewEdgeMock connected (nil after New).
func (m *EdgeMock) DeviceClient() *device.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.device
}

// AuditEvents returns the audit events recorded so far.
func (m *EdgeMock) AuditEvents() []edge.Event { return m.audit.Events() }

// DeviceClientWithID issues a certificate for id, connects a device with
// it and waits until the edge lists it. It is closed at the end of the test.
// It returns nil when that failed and the T's Fatalf returned.
func (m *EdgeMock) DeviceClientWithID(id string) *device.Client {
	if h, ok := m.t.(helperT); ok {
		h.Helper()
	}
	kp, err := m.ca.IssueDevice(id, certs.Options{})
	if err != nil {
		m.t.Fatalf("mock: device certificate for %q: %v", id, err)
		return nil
	}
	dc := &device.Client{URL: m.DeviceURL(), TLSConfig: certs.DeviceTLSConfig(kp.TLSCertificate(), m.pool), Config: m.opts.DeviceConfig, Agent: m.opts.DeviceAgent,
		Logger: m.log.With("component", "device", "device", id), BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second}
	if err := dc.Start(context.Background()); err != nil {
		m.t.Fatalf("mock: start device %s: %v", id, err)
		return nil
	}
	m.t.Cleanup(func() { dc.Close() })
	if err := m.waitDevice(id); err != nil {
		m.t.Fatalf("mock: %v", err)
		return nil
	}
	return dc
}

// WaitDevice waits until the edge lists a device with id.
func (m *EdgeMock) WaitDevice(id string) {
	if h, ok := m.t.(helperT); ok {
		h.Helper()
	}
	if err := m.waitDevice(id); err != nil {
		m.t.Fatalf("mock: %v", err)
	}
}

func (m *EdgeMock) waitDevice(id string) error {
	deadline := time.Now().Add(setupTimeout)
	for {
		for _, d := range m.srv.Devices() {
			if d.ID == id {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("device %s did not connect within %v", id, setupTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ClientFor dials a client session bound to device id with the mock's
// token. It is closed at the end of the test. It returns nil when that
// failed and the T's Fatalf returned.
func (m *EdgeMock) ClientFor(id string) *client.Client {
	if h, ok := m.t.(helperT); ok {
		h.Helper()
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	d := &client.Dialer{Edge: m.url, Token: m.opts.Token, TLSConfig: m.ClientTLS(), Config: m.opts.ClientConfig}
	c, err := d.Dial(ctx, id)
	if err != nil {
		m.t.Fatalf("mock: client for %s: %v", id, err)
		return nil
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// tWriter sends log lines to t.Log until the test's clean-up is over.
type tWriter struct {
	t    logT
	done atomic.Bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
