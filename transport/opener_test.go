package transport_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// TestOpenStreamAnswers: OpenStream tells every way the opening exchange
// can end, and the session stays usable after each.
func TestOpenStreamAnswers(t *testing.T) {
	b := testbroker.New(t, nil)
	hold := make(chan struct{})
	defer close(hold)
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{
		// Returns without an answer, as existing devices do for types they
		// do not serve.
		wire.MsgUDP: func(ctx context.Context, st *transport.Stream, payload []byte) error {
			return nil
		},
		// Never answers.
		wire.MsgPTY: func(ctx context.Context, st *transport.Stream, payload []byte) error {
			select {
			case <-hold:
			case <-ctx.Done():
			}
			return nil
		},
	})
	cl := b.DialClient(t, nil)

	t.Run("closed without answer", func(t *testing.T) {
		_, _, err := cl.OpenStream(testCtx(t), wire.MsgUDP, []byte("0:127.0.0.1:53"))
		require.ErrorIs(t, err, wire.ErrNoAnswer)
		require.Contains(t, err.Error(), "may not support this stream type")
	})
	t.Run("context cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, _, err := cl.OpenStream(ctx, wire.MsgPTY, nil)
			errc <- err
		}()
		cancel()
		err := <-errc
		require.Error(t, err)
		require.True(t, errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded), "got %v", err)
	})
	t.Run("open timeout", func(t *testing.T) {
		slow := b.DialClient(t, &transport.Config{OpenTimeout: 50 * time.Millisecond})
		_, _, err := slow.OpenStream(testCtx(t), wire.MsgPTY, nil)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
	})
	t.Run("payload too large", func(t *testing.T) {
		_, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, make([]byte, wire.MaxPayload+1))
		require.ErrorIs(t, err, wire.ErrPayloadTooLarge)
	})
	t.Run("session still usable", func(t *testing.T) {
		target := testutil.TCPServer(t, patternAfterEOF)
		n, err := exchange(testCtx(t), cl, target, 1000, 1)
		require.NoError(t, err)
		require.Equal(t, 1000, n)
	})
}
