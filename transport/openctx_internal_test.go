package transport

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/xtaci/smux"
)

// TestOpenContextOnAConnectionThatStopsDraining: smux waits up to 30 s
// for a SYN that cannot go out and takes no context. An open whose
// context ends meanwhile must return then, with the context's error,
// not smux's timeout; the stream, once the connection moves again and
// smux opens it, must be ended for the peer, not left open.
func TestOpenContextOnAConnectionThatStopsDraining(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	sess, err := newSession(a, nil, false, &Config{KeepAliveInterval: time.Minute, KeepAliveTimeout: 2 * time.Minute}, peerInfo{reset: true})
	require.NoError(t, err)
	defer func() {
		sess.Close()
		b.Close()
	}()

	// An open whose context has already ended sends nothing.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = sess.OpenContext(gone)
	require.ErrorIs(t, err, context.Canceled)

	// A keep-alive frame whose write the peer takes one byte of, and then
	// no more: the connection does not drain.
	go sess.conn.sendNOP()
	_, err = io.ReadFull(b, make([]byte, 1))
	require.NoError(t, err)
	require.Eventually(t, sess.conn.stalled, 10*time.Second, 5*time.Millisecond, "the stuck write is not seen")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = sess.OpenContext(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the open waited for smux, not for its context")
	require.NotErrorIs(t, err, smux.ErrTimeout)
	require.ErrorContains(t, err, "the connection is not taking data")

	// The peer drains the connection from now on.
	next := drainFrames(t, b)
	syn := next("SYN of the open given up")
	require.Equal(t, byte(smuxCmdSYN), syn.cmd, "the first frame after the keep-alive")
	end := next("end of the stream of the open given up")
	require.Equal(t, syn.sid, end.sid)
	require.Contains(t, []byte{smuxCmdFIN, cmdRST}, end.cmd, "the stream is ended for the peer")
	require.Zero(t, sess.conn.abandoned.Load(), "smux did not give up on the open: it is not counted as abandoned")

	// A later open works, with no goroutine of its own, and carries data.
	require.False(t, sess.conn.stalled())
	st, err := sess.OpenContext(context.Background())
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Write([]byte("moving"))
	require.NoError(t, err)
	for f := next("the next open"); ; f = next("the next open's data") {
		if f.sid != st.ID() {
			continue // what remains of the stream given up
		}
		if f.cmd == smuxCmdPSH {
			require.Equal(t, "moving", string(f.payload))
			break
		}
		require.Equal(t, byte(smuxCmdSYN), f.cmd)
	}
}
