package edge_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

func TestMain(m *testing.M) {
	// net/http lingers up to 500 ms on a connection whose request body it
	// did not read to its end (an upload the edge cut), before it closes
	// it: bounded, and its own.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// extraType is a stream type Tether does not define, as a newer qbee-v1
// peer might send.
const extraType wire.MsgType = 0x15

const (
	opsToken     = "ops-token-0123456789"
	peerToken    = "peer-token-0123456789"
	limitedToken = "limited-token-0123456789"
)

// testRules: "ops" may do everything on every device with TCP and UDP to
// loopback, and have the edge relay stream type extraType; "peer" may do
// the same on devices d-*, relayed types aside; "limited" may reach
// devices d-* with TCP to 127.0.0.1:1-1024.
func testRules() []edge.ClientRule {
	return []edge.ClientRule{
		{Name: "ops", TokenSHA256: edge.HashToken(opsToken), Devices: []string{"*"},
			TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")},
			UDP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}, PTY: true, Reload: true,
			ExtraTypes: []wire.MsgType{extraType}},
		{Name: "peer", TokenSHA256: edge.HashToken(peerToken), Devices: []string{"d-*"},
			TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")},
			UDP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}, PTY: true, Reload: true},
		{Name: "limited", TokenSHA256: edge.HashToken(limitedToken), Devices: []string{"d-*"},
			TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:1-1024")}},
	}
}

func testPolicy(t testing.TB) *edge.StaticPolicy {
	t.Helper()
	p, err := edge.NewStaticPolicy(testRules())
	require.NoError(t, err)
	return p
}

// clientWithToken dials a client session to device id with token; it is
// closed at the end of the test.
func clientWithToken(t testing.TB, m *mock.EdgeMock, id, token string) *client.Client {
	t.Helper()
	c, err := (&client.Dialer{Edge: m.URL(), Token: token, TLSConfig: m.ClientTLS(), Config: nil}).Dial(ctxT(t), id)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// closed reports whether c's session ended within 20 seconds.
func closed(c *client.Client) bool {
	select {
	case <-c.Done():
		return true
	case <-time.After(20 * time.Second):
		return false
	}
}

// newEdge starts an edge with the test policy (clients use the ops token).
func newEdge(t testing.TB, o mock.Options) *mock.EdgeMock {
	t.Helper()
	if o.Policy == nil {
		o.Policy = testPolicy(t)
	}
	if o.Token == "" {
		o.Token = opsToken
	}
	return mock.New(t, o)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tcpHandler is the device side of a TCP tunnel: dial and splice.
func tcpHandler(ctx context.Context, st *transport.Stream, payload []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", string(payload))
	if err != nil {
		_ = wire.WriteError(st, err.Error())
		return nil
	}
	_ = wire.WriteOK(st, nil)
	_, _, _ = transport.Splice(ctx, st, c, nil)
	return nil
}

// roundTrip sends msg through a TCP tunnel to an echo server and returns
// what comes back.
func roundTrip(t testing.TB, c *client.Client, addr, msg string) (string, error) {
	t.Helper()
	conn, err := tcp.Dial(ctxT(t), c, addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, msg); err != nil {
		return "", err
	}
	if err := conn.(*transport.Stream).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}

// dialStatus dials path on the edge and returns the HTTP status of a refused
// upgrade, or 101 with the session (closed at the end of the test).
func dialStatus(t testing.TB, m *mock.EdgeMock, path, auth string, tc *tls.Config) (int, *transport.Session) {
	t.Helper()
	sess, err := transport.Dial(ctxT(t), m.URL()+path, auth, tc, nil)
	if err == nil {
		t.Cleanup(func() { sess.Close() })
		return http.StatusSwitchingProtocols, sess
	}
	var se *transport.StatusError
	require.True(t, errors.As(err, &se), "dial %s: %v; want an HTTP status", path, err)
	return se.StatusCode, nil
}

// eventsOf returns the audit events of kind.
func eventsOf(m *mock.EdgeMock, kind string) []edge.Event {
	var out []edge.Event
	for _, e := range m.AuditEvents() {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func connected(m *mock.EdgeMock, id string) bool {
	for _, d := range m.Server().Devices() {
		if d.ID == id {
			return true
		}
	}
	return false
}

func edgeCAPool() *x509.CertPool { return x509.NewCertPool() }

// unanswered is a device handler that never answers: it reads its stream
// until the stream ends and reports how on ended. started has a value once
// it runs.
func unanswered() (h device.Handler, started chan struct{}, ended chan error) {
	started, ended = make(chan struct{}, 1), make(chan error, 1)
	h = func(ctx context.Context, st *transport.Stream, _ []byte) error {
		started <- struct{}{}
		_, err := io.Copy(io.Discard, st)
		ended <- err
		return nil
	}
	return h, started, ended
}

// waitFor receives from ch within d, or fails the test with what.
func waitFor[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s within %v", what, d)
		panic("unreachable")
	}
}
