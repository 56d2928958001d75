package transport_test

import (
	"context"
	"errors"
	"io"
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

// plainOpener hides a client's OpenStreamEarly.
type plainOpener struct{ transport.Opener }

// TestOpenStreamEarly: the answer of an optimistic open comes with the
// first read, and every way it can fail reaches that read.
func TestOpenStreamEarly(t *testing.T) {
	b := testbroker.New(t, nil)
	hold := make(chan struct{})
	defer close(hold)
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{
		wire.MsgTCP: testbroker.TCPHandler,
		// Returns without an answer.
		wire.MsgUDP: func(ctx context.Context, st *transport.Stream, payload []byte) error { return nil },
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
	echo := testutil.TCPServer(t, testutil.LineEcho)

	t.Run("bytes before the answer", func(t *testing.T) {
		st, err := cl.OpenStreamEarly(testCtx(t), wire.MsgTCP, []byte(echo), nil)
		require.NoError(t, err)
		defer st.Close()
		_, err = st.Write([]byte("ping"))
		require.NoError(t, err)
		buf := make([]byte, 4)
		_, err = io.ReadFull(st, buf)
		require.NoError(t, err)
		require.Equal(t, "ping", string(buf))
		ok, err := st.Answer()
		require.NoError(t, err)
		require.Empty(t, ok)
	})
	t.Run("closed without answer", func(t *testing.T) {
		st, err := cl.OpenStreamEarly(testCtx(t), wire.MsgUDP, []byte("0:127.0.0.1:53"), nil)
		require.NoError(t, err)
		defer st.Close()
		_, err = st.Read(make([]byte, 1))
		require.ErrorIs(t, err, wire.ErrNoAnswer)
		require.ErrorIs(t, st.Failed(), wire.ErrNoAnswer)
	})
	t.Run("context cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := cl.OpenStreamEarly(ctx, wire.MsgPTY, nil, nil)
		require.NoError(t, err)
		defer st.Close()
		cancel()
		_, err = st.Read(make([]byte, 1))
		require.True(t, errors.Is(err, context.Canceled), "got %v", err)
	})
	t.Run("open timeout", func(t *testing.T) {
		slow := b.DialClient(t, &transport.Config{OpenTimeout: 50 * time.Millisecond})
		st, err := slow.OpenStreamEarly(testCtx(t), wire.MsgPTY, nil, nil)
		require.NoError(t, err)
		defer st.Close()
		_, err = st.Read(make([]byte, 1))
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
		require.Contains(t, err.Error(), "no answer by the open's deadline")
	})
	t.Run("an opener without early opens waits for the answer", func(t *testing.T) {
		_, err := transport.OpenEarly(testCtx(t), plainOpener{cl}, wire.MsgUDP, []byte("0:127.0.0.1:53"), nil)
		require.ErrorIs(t, err, wire.ErrNoAnswer)
		st, err := transport.OpenEarly(testCtx(t), plainOpener{cl}, wire.MsgTCP, []byte(echo), nil)
		require.NoError(t, err)
		defer st.Close()
		_, err = st.Write([]byte("pong"))
		require.NoError(t, err)
		buf := make([]byte, 4)
		_, err = io.ReadFull(st, buf)
		require.NoError(t, err)
		require.Equal(t, "pong", string(buf))
	})
}
