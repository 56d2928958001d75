package transport_test

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// rawFlood writes frames on the raw peer's connection, ignoring write
// errors: the session under test may close the connection mid-flood.
func rawFlood(p *rawPeer, frames ...[]byte) {
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	_, _ = p.Conn.Write(all)
}

// expectViolation waits for s to be closed by its policing and checks the
// reason.
func expectViolation(t *testing.T, s *transport.Session, reason string) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("the session was not closed")
	}
	require.ErrorIs(t, s.Err(), transport.ErrProtocolViolation)
	require.Contains(t, s.Err().Error(), reason)
	_, err := s.Accept()
	require.ErrorIs(t, err, transport.ErrProtocolViolation, "AcceptStream after the violation")
}

func TestPolicingWindowIgnored(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)

	rawFlood(p, frame(2, cmdSYN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	// Nobody reads the stream; the peer sends one and a half windows in
	// full frames, beyond the window it was never granted more than.
	full := frame(2, cmdPSH, 3, make([]byte, 65535))
	go rawFlood(p, repeat(full, transport.DefaultMaxStreamBuffer*3/2/65535+1)...)
	expectViolation(t, s, "window")
	_, err = st.Read(make([]byte, 1))
	require.ErrorIs(t, err, transport.ErrProtocolViolation, "a read on the stream says why")
	p.ExpectClosed()
}

// expectStreamReset waits for st to be reset by the policing and checks
// the reason, and that the session itself lives on.
func expectStreamReset(t *testing.T, s *transport.Session, st *transport.Stream, reason string) {
	t.Helper()
	var err error
	require.Eventually(t, func() bool {
		_ = st.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err = st.Read(make([]byte, 1<<20))
		return errors.Is(err, transport.ErrProtocolViolation)
	}, waitLong, time.Millisecond, "the flooded stream was not reset (last read: %v)", err)
	require.Contains(t, err.Error(), reason)
	require.NoError(t, s.Err(), "the session is not closed for one stream's flood")
	select {
	case <-s.Done():
		t.Fatal("the session ended")
	default:
	}
}

// A peer that floods one stream with tiny frames loses that stream, not its
// session: a relay (the edge) passes one client's frames on one for one,
// and the other streams on its session belong to other people.
func TestPolicingTinyFrameFlood(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)

	rawFlood(p, frame(2, cmdSYN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	// One-byte frames, 64 bytes of budget each: the payload stays well
	// inside the window, but each frame pins its own buffer at the receiver.
	// The stream's budget is two windows' worth of such frames.
	n := 2*transport.DefaultMaxStreamBuffer/64 + 10_000
	rawFlood(p, repeat(frame(2, cmdPSH, 3, []byte{'x'}), n)...)
	expectStreamReset(t, s, st, "tiny frames")

	// The peer learns it: its stream ends.
	p.ReadStream(3)
	// Another stream on the same session still works.
	rawFlood(p, frame(2, cmdSYN, 5, nil), frame(2, cmdPSH, 5, []byte("still here")), frame(2, cmdFIN, 5, nil))
	other, err := s.Accept()
	require.NoError(t, err)
	got, err := io.ReadAll(other)
	require.NoError(t, err)
	require.Equal(t, "still here", string(got))
}

// TestPolicingTinyFramesAcrossStreams: streams that each stay under their
// own budget still cannot exceed the session's: the stream holding the
// most unread frames is reset, and the session lives on.
func TestPolicingTinyFramesAcrossStreams(t *testing.T) {
	cfg := &transport.Config{MaxStreamBuffer: 1 << 20, MaxReceiveBuffer: 2 << 20}
	us, pki := newUpgradeServer(t, cfg)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)

	var frames [][]byte
	for sid := uint32(3); sid <= 9; sid += 2 {
		frames = append(frames, frame(2, cmdSYN, sid, nil))
	}
	rawFlood(p, frames...)
	streams := map[uint32]*transport.Stream{}
	for range 4 {
		st, err := s.Accept()
		require.NoError(t, err)
		streams[uint32(st.ID())] = st
	}
	// Streams 3, 5 and 7 hold 8,000 frames each, stream 9 hold 12,000:
	// each is within its 32,768-frame budget, the session (2 MiB / 64 =
	// 32,768 frames) is not, and stream 9 holds the most.
	frames = frames[:0]
	for sid := uint32(3); sid <= 7; sid += 2 {
		frames = append(frames, repeat(frame(2, cmdPSH, sid, []byte{'x'}), 8_000)...)
	}
	frames = append(frames, repeat(frame(2, cmdPSH, 9, []byte{'x'}), 12_000)...)
	rawFlood(p, frames...)
	expectStreamReset(t, s, streams[9], "unread frames on the session")
	for sid := uint32(3); sid <= 7; sid += 2 {
		_ = streams[sid].SetReadDeadline(time.Now().Add(time.Second))
		n, err := io.ReadFull(streams[sid], make([]byte, 8_000))
		require.NoError(t, err, "stream %d keeps its data", sid)
		require.Equal(t, 8_000, n)
	}
}

func TestPolicingMalformedFrames(t *testing.T) {
	tests := []struct {
		name   string
		frame  []byte
		reason string
	}{
		{"smux version 1", frame(1, cmdSYN, 3, nil), "smux version 1"},
		{"smux version 0x7f", frame(0x7f, cmdPSH, 3, []byte("x")), "smux version 127"},
		{"unknown command", frame(2, 9, 3, nil), "unknown smux command 9"},
		// smux stops reading at these without closing its session: the
		// session would hang, unseen by the keep-alive.
		{"SYN with a payload", frame(2, cmdSYN, 3, []byte("x")), "SYN with a 1-byte payload"},
		{"NOP with a payload", frame(2, cmdNOP, 0, []byte("x")), "NOP with a 1-byte payload"},
		{"short window update", frame(2, cmdUPD, 3, []byte("1234")), "window update with a 4-byte payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			us, pki := newUpgradeServer(t, nil)
			p := rawDial(t, us.addr, pki)
			p.Upgrade("/client/d1")
			s := us.session(t)
			rawFlood(p, tt.frame)
			expectViolation(t, s, tt.reason)
			p.ExpectClosed()
		})
	}
}

// TestPolicingTruncatedFrameHeader: a connection that ends inside a frame
// header ends the session without a violation and without a hang.
func TestPolicingTruncatedFrameHeader(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)
	rawFlood(p, frame(2, cmdPSH, 3, nil)[:5])
	p.Conn.Close()
	_, err := s.Accept()
	require.Error(t, err)
	require.NoError(t, s.Err(), "a cut connection is not a violation")
}

// TestPolicingHonestSmallFrames: a peer that keeps its window never trips
// the policing, even with small frames and a reader that stops until the
// window is full.
func TestPolicingHonestSmallFrames(t *testing.T) {
	cli, srv, _, _ := sessionPair(t, nil)
	st, err := cli.Open()
	require.NoError(t, err)
	defer st.Close()
	const (
		chunk = 40
		total = (1<<20)/chunk*chunk + 100*chunk // a full window and then some
	)
	written := make(chan error, 1)
	go func() {
		b := make([]byte, chunk)
		for n := 0; n < total; n += chunk {
			if _, err := st.Write(b); err != nil {
				written <- err
				return
			}
		}
		written <- st.CloseWrite()
	}()
	ps, err := srv.Accept()
	require.NoError(t, err)
	defer ps.Close()
	// One read grants the full 1 MiB window; then the reader stops until
	// the writer is blocked by it.
	_, err = io.ReadFull(ps, make([]byte, 1))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return st.Written() >= 1<<20-chunk }, waitLong, 5*time.Millisecond)
	require.NoError(t, srv.Err())

	n, err := io.Copy(io.Discard, ps)
	require.NoError(t, err)
	require.Equal(t, int64(total-1), n)
	require.NoError(t, <-written)
	require.NoError(t, srv.Err())
}

// TestPolicingHonestTinyFramesActiveReader: 50,000 one-byte frames (more
// than a stream's frame budget) pass when the reader keeps up.
func TestPolicingHonestTinyFramesActiveReader(t *testing.T) {
	cli, srv, _, _ := sessionPair(t, nil)
	st, err := cli.Open()
	require.NoError(t, err)
	defer st.Close()
	const total = 50_000
	written := make(chan error, 1)
	go func() {
		for range total {
			if _, err := st.Write([]byte{'x'}); err != nil {
				written <- err
				return
			}
		}
		written <- st.CloseWrite()
	}()
	ps, err := srv.Accept()
	require.NoError(t, err)
	defer ps.Close()
	n, err := io.Copy(io.Discard, ps)
	require.NoError(t, err)
	require.Equal(t, int64(total), n)
	require.NoError(t, <-written)
	require.NoError(t, srv.Err())
}

func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestPolicingViolationSentAhead: a bad frame that arrives with the upgrade
// request, before the session is fully set up, still closes it.
func TestPolicingViolationSentAhead(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Write([]byte(fmt.Sprintf(upgradeRequest, "/client/d1")), frame(3, cmdSYN, 3, nil))
	s := us.session(t)
	expectViolation(t, s, "smux version 3")
	p.ExpectClosed()
}

// TestPolicingIgnoresClosedStreams: data still in flight to a stream this
// side has closed is discarded by smux and is no violation, however much.
func TestPolicingIgnoresClosedStreams(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)

	rawFlood(p, frame(2, cmdSYN, 3, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	require.NoError(t, st.Close())
	// 2 MiB to the closed stream, then a new stream with a message.
	rawFlood(p, repeat(frame(2, cmdPSH, 3, make([]byte, 65535)), 32)...)
	rawFlood(p, frame(2, cmdSYN, 5, nil), frame(2, cmdPSH, 5, msg(wire.MsgReload, nil)))
	st2, err := s.Accept()
	require.NoError(t, err)
	defer st2.Close()
	m, err := wire.ReadMessage(st2)
	require.NoError(t, err)
	require.Equal(t, wire.MsgReload, m.Type)
	require.NoError(t, s.Err())
}
