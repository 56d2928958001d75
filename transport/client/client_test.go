package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

func TestURL(t *testing.T) {
	tests := []struct {
		name, edge, device, want string
	}{
		{"host and port", "https://edge.example.com:8443", "gw-17", "https://edge.example.com:8443/client/gw-17"},
		{"base path", "https://edge.example.com/tether/", "gw-17", "https://edge.example.com/tether/client/gw-17"},
		{"every character of a device ID", "https://edge", "Gw_1.7:a-b", "https://edge/client/Gw_1.7:a-b"},
		{"escaped once", "https://edge/a%20b", "x y", "https://edge/a%20b/client/x%20y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.URL(tt.edge, tt.device)
			require.NoError(t, err)
			if got != tt.want {
				t.Errorf("got %s; want %s", got, tt.want)
			}
		})
	}
	_, err := client.URL("::", "gw-17")
	require.ErrorContains(t, err, "parse edge URL")
}

// TestClientDoneWhenTheConnectionDies: Client.Done reports a dead
// connection at once, not after the keep-alive timeout.
func TestClientDoneWhenTheConnectionDies(t *testing.T) {
	slow := &transport.Config{KeepAliveTimeout: time.Hour, KeepAliveInterval: time.Minute}
	b := testbroker.New(t, slow)
	b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, slow)
	require.Eventually(t, func() bool { return b.NumClients() == 1 }, // the broker holds the session
		testbroker.WaitLong, time.Millisecond)
	b.Restart() // closes every session
	select {
	case <-cl.Done():
	case <-time.After(testbroker.WaitLong):
		t.Fatal("Done did not report the dead connection")
	}
	_, _, err := cl.OpenStream(testbroker.Ctx(t), wire.MsgTCP, []byte("127.0.0.1:1"))
	require.Error(t, err)
	require.False(t, errors.Is(err, wire.ErrNoAnswer))
}
