// Package testedge runs the real edge (edge.Server, as tether-edge runs
// it) on 127.0.0.1 with a throw-away PKI, for the runnable examples of
// device, transport/client and transport/tcp. Examples have no testing.TB,
// and they build device.Client and client.Dialer from their fields, so
// they need what Edge hands out: the edge's URL, a token, and the TLS
// configuration of a client and of any device ID.
//
// It is imported only from _test.go files (scripts/deps-check.sh checks
// it). Tests use internal/testbroker, or mock for tests against the real
// edge.
package testedge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport/wire"
)

// Edge is a running edge.Server with a policy that lets any non-empty
// token reach any device. Close it when done.
type Edge struct {
	// URL is the edge's base URL, https://127.0.0.1:port: a
	// client.Dialer's Edge.
	URL string
	// Token is a bearer token the edge accepts.
	Token string

	ca     *certs.KeyPair
	srv    *edge.Server
	hs     *http.Server
	served chan struct{}
}

// Start starts an Edge. Its logs are discarded.
func Start() (*Edge, error) {
	ca, err := certs.NewCA("Example CA", certs.Options{})
	if err != nil {
		return nil, fmt.Errorf("testedge: edge CA: %w", err)
	}
	kp, err := ca.IssueServer([]string{"127.0.0.1"}, certs.Options{})
	if err != nil {
		return nil, fmt.Errorf("testedge: edge certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testedge: edge listener: %w", err)
	}
	e := &Edge{URL: "https://" + ln.Addr().String(), Token: "example-token", ca: ca, served: make(chan struct{})}
	e.srv = &edge.Server{DeviceCA: certs.PoolOf(ca.Cert), Policy: edge.AllowAll{}, LastSeen: &edge.MemoryLastSeen{}}
	e.hs = e.srv.HTTPServer(certs.EdgeTLSConfig(kp.TLSCertificate()))
	go func() {
		defer close(e.served)
		_ = e.hs.Serve(e.srv.Listener(ln, e.hs.TLSConfig))
	}()
	return e, nil
}

// DeviceURL returns the device endpoint: a device.Client's URL.
func (e *Edge) DeviceURL() string { return e.URL + "/device" }

// DeviceTLS issues a certificate for device id and returns the device's
// TLS configuration. It panics when id is not a valid device ID
// (certs.ValidDeviceID says why).
func (e *Edge) DeviceTLS(id string) *tls.Config {
	kp, err := e.ca.IssueDevice(id, certs.Options{})
	if err != nil {
		panic(fmt.Sprintf("testedge: device certificate for %q: %v", id, err))
	}
	return certs.DeviceTLSConfig(kp.TLSCertificate(), e.roots())
}

// ClientTLS returns a client's TLS configuration: it trusts the edge.
func (e *Edge) ClientTLS() *tls.Config { return certs.ClientTLSConfig(e.roots()) }

func (e *Edge) roots() *x509.CertPool { return certs.PoolOf(e.ca.Cert) }

// WaitDevice waits until the edge lists device id, so that clients can
// reach it.
func (e *Edge) WaitDevice(ctx context.Context, id string) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		for _, d := range e.srv.Devices() {
			if d.ID == id {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testedge: device %s did not connect: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

// StartDevice connects a device.Client with id's certificate, serving
// handlers, and waits until the edge lists it, within ctx. It runs until
// it is closed: close it when done.
func (e *Edge) StartDevice(ctx context.Context, id string, handlers map[wire.MsgType]device.Handler) (*device.Client, error) {
	dc := &device.Client{URL: e.DeviceURL(), TLSConfig: e.DeviceTLS(id)}
	for t, h := range handlers {
		dc.Handle(t, h)
	}
	if err := dc.Start(context.Background()); err != nil {
		return nil, fmt.Errorf("testedge: start device %s: %w", id, err)
	}
	if err := e.WaitDevice(ctx, id); err != nil {
		dc.Close()
		return nil, err
	}
	return dc, nil
}

// Close stops the edge: its listener, its sessions and their goroutines.
func (e *Edge) Close() error {
	e.hs.Close()
	<-e.served
	return e.srv.Close()
}
