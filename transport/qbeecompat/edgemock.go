package qbeecompat

import (
	"crypto/tls"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/client"
)

// Tester is what NewEdgeMock needs from a test: mock.T. *testing.T is one,
// as is any harness with Errorf, Fatalf and Cleanup.
type Tester = mock.T

// EdgeMock is a real Tether edge on loopback, for tests: a mock.EdgeMock.
type EdgeMock struct {
	t      Tester
	m      *mock.EdgeMock
	device *DeviceClient // the mock's one device
}

// NewEdgeMock starts an edge, connects a device and a client bound to it,
// and returns them; everything is closed through t.Cleanup. Register the
// device's handlers with WithHandler afterwards. It returns nil values when
// set-up failed and t.Fatalf returned.
func NewEdgeMock(t Tester) (*Client, *DeviceClient, *EdgeMock) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	c, d, m := mock.NewEdgeMock(t)
	if m == nil {
		return nil, nil, nil
	}
	e := &EdgeMock{t: t, m: m, device: wrapDevice(d, m.Logger())}
	return e.wrapClient(c), e.device, e
}

// wrapClient wraps a client of the mock, whose tunnels end with the test.
func (e *EdgeMock) wrapClient(c *client.Client) *Client {
	cc := wrapClient(c, e.m.Logger())
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// URL is the edge's base URL, https://127.0.0.1:port. Clients connect to
// /client/<device ID> under it (Native().ClientURL), devices to /device.
func (e *EdgeMock) URL() string { return e.m.URL() }

// ClientTLS returns a tls.Config that trusts the edge.
func (e *EdgeMock) ClientTLS() *tls.Config { return e.m.ClientTLS() }

// Client connects a new client to the mock's device; it is closed at the end
// of the test. It returns nil when that failed and the Tester's Fatalf
// returned.
func (e *EdgeMock) Client() *Client {
	if h, ok := e.t.(interface{ Helper() }); ok {
		h.Helper()
	}
	c := e.m.ClientFor(mock.DefaultDeviceID)
	if c == nil {
		return nil
	}
	return e.wrapClient(c)
}

// DeviceClient returns the mock's device, the one NewEdgeMock returned.
func (e *EdgeMock) DeviceClient() *DeviceClient { return e.device }

// Native returns the mock.EdgeMock underneath: more devices
// (DeviceClientWithID), audit events, the edge itself.
func (e *EdgeMock) Native() *mock.EdgeMock { return e.m }
