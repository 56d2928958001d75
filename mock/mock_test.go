package mock_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewEdgeMockHandlersRegisteredAfterStart(t *testing.T) {
	client, device, m := mock.NewEdgeMock(t)
	require.Same(t, client, m.Client())
	require.Same(t, device, m.DeviceClient())
	require.True(t, device.Connected())

	// Registered after NewEdgeMock returned: in place for the next stream.
	device.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		return nil
	})
	device.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		_, _ = io.WriteString(st, "dialled "+string(p))
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, client.Reload(ctx))
	conn, err := tcp.Dial(ctx, client, "127.1:80")
	require.NoError(t, err)
	b, err := io.ReadAll(conn)
	require.NoError(t, err)
	conn.Close()
	require.Equal(t, "dialled 127.0.0.1:80", string(b), "the edge sends the canonical target")

	var kinds []string
	for _, e := range m.AuditEvents() {
		kinds = append(kinds, e.Kind)
	}
	require.Contains(t, kinds, edge.EventDeviceConnect)
	require.Contains(t, kinds, edge.EventClientOpen)
	require.Contains(t, kinds, edge.EventStreamOpen)
}

func TestSeveralDevicesByID(t *testing.T) {
	m := mock.New(t, mock.Options{})
	for _, id := range []string{"a", "b"} {
		d := m.DeviceClientWithID(id)
		d.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
			_ = wire.WriteOK(st, []byte(id))
			return nil
		})
	}
	for _, id := range []string{"a", "b"} {
		c := m.ClientFor(id)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		st, ok, err := c.OpenStream(ctx, wire.MsgReload, nil)
		cancel()
		require.NoError(t, err)
		st.Close()
		require.Equal(t, id, string(ok), "a client for %s reached another device", id)
	}
	require.Len(t, m.Server().Devices(), 2)
}

func TestDevicesReallyUseMTLS(t *testing.T) {
	m := mock.New(t, mock.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := transport.Dial(ctx, m.DeviceURL(), "", m.ClientTLS(), nil)
	var se *transport.StatusError
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Equal(t, http.StatusUnauthorized, se.StatusCode)

	_, err = (&client.Dialer{Edge: m.URL(), Token: "", TLSConfig: m.ClientTLS(), Config: nil}).Dial(ctx, "nobody")
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Equal(t, http.StatusUnauthorized, se.StatusCode)
}
