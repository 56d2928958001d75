package udp_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/wire"
	"github.com/tetherhq/tether/udp"
)

// A Handler and a Listener with nothing but the required fields carry a
// tunnel: no logger, no config, no local address.
func TestZeroValuesCarryATunnel(t *testing.T) {
	m := mock.New(t, mock.Options{})
	dc := m.DeviceClientWithID(mock.DefaultDeviceID)
	var h udp.Handler
	dc.Handle(wire.MsgUDP, h.Serve)
	t.Cleanup(func() { h.Close() })
	cl := m.ClientFor(mock.DefaultDeviceID)
	srv := newUDPServer(t, "127.0.0.1:0", echo)

	l := &udp.Listener{Opener: cl, Remote: srv.addr()}
	require.NoError(t, l.Start(context.Background()))
	t.Cleanup(func() { l.Close() })
	la := l.Addr().(*net.UDPAddr)
	assert.True(t, la.IP.IsLoopback(), "got local address %v; want 127.0.0.1 when Local is empty", la)

	peer := localPeer(t)
	_, err := peer.WriteToUDP([]byte("q"), la)
	require.NoError(t, err)
	got, _ := readFrom(t, peer)
	assert.Equal(t, "answer:q", string(got))
	assert.EqualValues(t, 1, h.Stats().Opened)
}

// A Handler closed before its first stream refuses tunnels with an Error
// that says why, and counts the refusal.
func TestHandlerClosedBeforeUseRefuses(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	require.NoError(t, r.dev.Close())
	_, _, err := r.client.OpenStream(testCtx(t), wire.MsgUDP, []byte("0:127.0.0.1:53"))
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Contains(t, re.Error(), "shutting down")
	assert.EqualValues(t, 1, r.dev.Stats().Refused)
	require.NoError(t, r.dev.Close(), "a second Close")
}

func TestListenerLifecycle(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	srv := newUDPServer(t, "127.0.0.1:0", echo)

	t.Run("a second Start fails", func(t *testing.T) {
		l := r.listen(t, srv.addr(), nil)
		err := l.Start(context.Background())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "already started")
	})
	t.Run("Close before Start", func(t *testing.T) {
		l := &udp.Listener{Opener: r.client, Remote: srv.addr()}
		require.NoError(t, l.Close())
		select {
		case <-l.Done():
		default:
			t.Fatal("Done still open after Close; want it closed")
		}
		err := l.Start(context.Background())
		assert.True(t, errors.Is(err, udp.ErrClosed), "got Start error %v; want udp.ErrClosed", err)
		assert.Nil(t, l.Addr())
		require.NoError(t, l.Close(), "a second Close")
	})
	t.Run("no Opener", func(t *testing.T) {
		err := (&udp.Listener{Remote: srv.addr()}).Start(context.Background())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Opener is required")
	})
	t.Run("the context ends it", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		l := &udp.Listener{Opener: r.client, Remote: srv.addr(), Logger: testLogger(t)}
		require.NoError(t, l.Start(ctx))
		cancel()
		select {
		case <-l.Done():
		case <-time.After(20 * time.Second):
			t.Fatal("Done still open 20 s after the context ended")
		}
		assert.NoError(t, l.Err(), "a Listener ended by its context reports no error")
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
