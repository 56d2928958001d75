package transport

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/xtaci/smux"
)

// rawFrame is one frame as a peer read it.
type rawFrame struct {
	cmd     byte
	sid     uint32
	payload []byte
}

// drainFrames reads, as a raw peer, the frames that arrive on b, past the
// rest of a keep-alive frame of which one byte was read, until b ends. It
// returns what waits for the next one, failing the test without one.
func drainFrames(t *testing.T, b net.Conn) func(what string) rawFrame {
	frames := make(chan rawFrame, 64)
	go func() {
		defer close(frames)
		if _, err := io.ReadFull(b, make([]byte, smuxHeaderSize-1)); err != nil {
			return // the rest of the keep-alive frame
		}
		for {
			var h [smuxHeaderSize]byte
			if _, err := io.ReadFull(b, h[:]); err != nil {
				return
			}
			p := make([]byte, binary.LittleEndian.Uint16(h[2:4]))
			if _, err := io.ReadFull(b, p); err != nil {
				return
			}
			frames <- rawFrame{cmd: h[1], sid: binary.LittleEndian.Uint32(h[4:8]), payload: p}
		}
	}()
	return func(what string) rawFrame {
		t.Helper()
		select {
		case f, ok := <-frames:
			require.True(t, ok, "the connection ended before %s", what)
			return f
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s", what)
			return rawFrame{}
		}
	}
}

// TestAbandonedOpenLeavesNothingBehind: smux gives up on an open after
// 30 s when its send loop cannot write the SYN, and forgets the stream;
// the SYN stays queued and goes out once the connection drains. That
// stream must not stay in the policer, its window counted against the
// session for good, and the peer must learn that nobody will use it. An
// open that succeeds afterwards must stay untouched. The test takes
// smux's 30 s.
func TestAbandonedOpenLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	sess, err := newSession(a, nil, false, &Config{KeepAliveInterval: time.Minute, KeepAliveTimeout: 2 * time.Minute}, peerInfo{reset: true})
	require.NoError(t, err)
	sess.conn.reapGrace = 200 * time.Millisecond
	defer func() {
		sess.Close()
		b.Close()
	}()

	// A keep-alive frame whose write the peer takes one byte of, and then
	// no more: the connection does not drain.
	go sess.conn.sendNOP()
	_, err = io.ReadFull(b, make([]byte, 1))
	require.NoError(t, err)
	_, err = sess.Open()
	require.ErrorIs(t, err, smux.ErrTimeout, "smux gave up on the open")

	// The peer drains the connection from now on.
	next := drainFrames(t, b)
	syn := next("SYN of the abandoned open")
	require.Equal(t, byte(smuxCmdSYN), syn.cmd)
	end := next("end of the abandoned stream")
	require.Equal(t, byte(cmdRST), end.cmd, "the peer is told at once, with a reset")
	require.Equal(t, syn.sid, end.sid)
	require.Equal(t, reasonAbandoned, string(end.payload))

	sess.conn.pol.mu.Lock()
	_, kept := sess.conn.pol.streams[syn.sid]
	committed := sess.conn.pol.committed
	sess.conn.pol.mu.Unlock()
	require.False(t, kept, "the abandoned stream left its policing state")
	require.Zero(t, committed, "the abandoned stream's window is still counted")
	require.Zero(t, sess.conn.abandoned.Load(), "the reap goes on after its work is done")

	// A later open works, and outlives the grace.
	st, err := sess.Open()
	require.NoError(t, err)
	defer st.Close()
	f := next("SYN of the next open")
	require.Equal(t, byte(smuxCmdSYN), f.cmd)
	require.NotEqual(t, syn.sid, f.sid)
	time.Sleep(3 * sess.conn.reapGrace)
	_, err = st.Write([]byte("still here"))
	require.NoError(t, err)
	f = next("data of the next open")
	require.Equal(t, rawFrame{cmd: smuxCmdPSH, sid: st.ID(), payload: []byte("still here")}, f)
	require.NotNil(t, st.recv)
}
