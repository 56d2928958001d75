// Package mock runs a real edge for tests: the edge.Server of tether-edge
// on 127.0.0.1 with a throw-away PKI, so devices really use mTLS and
// clients really send bearer tokens. Everything it starts is cleaned up
// through t.Cleanup.
//
//	client, device, m := mock.NewEdgeMock(t)
//	device.Handle(wire.MsgTCP, myHandler)
//	conn, err := tcp.Dial(ctx, client, "127.0.0.1:22")
package mock

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
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
	// Logger receives the edge's logs; nil writes them to t.Log.
	Logger *slog.Logger
	// Metrics, when set, records the edge's metrics.
	Metrics *edge.Metrics
	// PKI, when set, is used instead of a fresh one: two edges sharing a
	// PKI accept the same devices, as edges behind one load balancer do.
	PKI *certstest.PKI
	// Auditor, when set, receives the edge's audit records instead of the
	// mock's memory (AuditEvents then returns none).
	Auditor edge.Auditor
}

// EdgeMock is a live edge on loopback.
type EdgeMock struct {
	t     testing.TB
	opts  Options
	pki   *certstest.PKI
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
// stream) and a client bound to that device.
func NewEdgeMock(t testing.TB) (*client.Client, *device.Client, *EdgeMock) {
	t.Helper()
	m := New(t, Options{})
	d := m.DeviceClientWithID(DefaultDeviceID)
	c := m.ClientFor(DefaultDeviceID)
	m.mu.Lock()
	m.device, m.client = d, c
	m.mu.Unlock()
	return c, d, m
}

// New starts an edge with opts and no device.
func New(t testing.TB, opts Options) *EdgeMock {
	t.Helper()
	if opts.Token == "" {
		opts.Token = Token
	}
	log := opts.Logger
	if log == nil {
		tw := &tWriter{t: t}
		t.Cleanup(func() { tw.done.Store(true) }) // runs after every later cleanup
		log = slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	pki := opts.PKI
	if pki == nil {
		pki = certstest.New(t)
	}
	m := &EdgeMock{t: t, opts: opts, pki: pki, audit: &edge.MemoryAuditor{}, log: log}
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
	m.srv = &edge.Server{
		DeviceCA:  pki.Pool(),
		Policy:    policy,
		Revoked:   opts.Revoked,
		Auditor:   auditor,
		Transport: opts.Transport,
		Limits:    opts.Limits,
		Metrics:   opts.Metrics,
		Logger:    log.With("component", "edge"),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mock: listen: %v", err)
	}
	m.url = "https://" + ln.Addr().String()
	m.hs = m.srv.HTTPServer(pki.EdgeTLS())
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

// URL is the edge's base URL, https://127.0.0.1:port.
func (m *EdgeMock) URL() string { return m.url }

// DeviceURL is the device endpoint.
func (m *EdgeMock) DeviceURL() string { return m.url + "/device" }

// ClientTLS returns a client tls.Config that trusts the edge.
func (m *EdgeMock) ClientTLS() *tls.Config { return m.pki.ClientTLS() }

// PKI returns the mock's PKI, to issue more (or broken) device certificates.
func (m *EdgeMock) PKI() *certstest.PKI { return m.pki }

// Server returns the edge itself, for Reload, Shutdown and Devices.
func (m *EdgeMock) Server() *edge.Server { return m.srv }

// HTTPServer returns the http.Server serving the edge.
func (m *EdgeMock) HTTPServer() *http.Server { return m.hs }

// Token returns the clients' bearer token.
func (m *EdgeMock) Token() string { return m.opts.Token }

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
func (m *EdgeMock) DeviceClientWithID(id string) *device.Client {
	m.t.Helper()
	kp := m.pki.Device(id)
	dc := &device.Client{URL: m.DeviceURL(), TLSConfig: m.pki.DeviceTLS(kp), Config: m.opts.DeviceConfig,
		Logger: m.log.With("component", "device", "device", id), BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second}
	if err := dc.Start(context.Background()); err != nil {
		m.t.Fatalf("mock: start device %s: %v", id, err)
	}
	m.t.Cleanup(func() { dc.Close() })
	m.WaitDevice(id)
	return dc
}

// WaitDevice waits until the edge lists a device with id.
func (m *EdgeMock) WaitDevice(id string) {
	m.t.Helper()
	deadline := time.Now().Add(setupTimeout)
	for {
		for _, d := range m.srv.Devices() {
			if d.ID == id {
				return
			}
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mock: device %s did not connect within %v", id, setupTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ClientFor dials a client session bound to device id with the mock's
// token. It is closed at the end of the test.
func (m *EdgeMock) ClientFor(id string) *client.Client {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	d := &client.Dialer{Edge: m.url, Token: m.opts.Token, TLSConfig: m.ClientTLS(), Config: m.opts.ClientConfig}
	c, err := d.Dial(ctx, id)
	if err != nil {
		m.t.Fatalf("mock: client for %s: %v", id, err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// tWriter sends log lines to t.Log until the test's clean-up is over.
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
