package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// A client that closes its stream entirely while the target keeps talking:
// smux has no reset, so every hop sees only the FIN. Without a bound, the
// device would write into a window that never reopens, for ever, holding
// the target connection and a stream slot. Splice bounds it.
func TestSpliceEndsWhenThePeerIsGone(t *testing.T) {
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, nil)

	ended := make(chan error, 1)
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		// Talk until the tunnel gives up on us.
		chunk := make([]byte, 64<<10)
		for {
			_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				ended <- err
				return
			}
		}
	})
	conn, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, []byte(target))
	require.NoError(t, err)
	buf := make([]byte, 1024)
	_, err = conn.Read(buf) // the target is talking
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	select {
	case err := <-ended:
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the target's own deadline fired: the tunnel never let go (%v)", err)
	case <-time.After(25 * time.Second):
		t.Fatal("the tunnel kept the target's connection open after the client closed its stream")
	}
}

// TestSplice: half-close in each direction, byte counts, and both ends
// closed at the end.
func TestSplice(t *testing.T) {
	pair := func() (*net.TCPConn, *net.TCPConn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		c1, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		c2, err := ln.Accept()
		require.NoError(t, err)
		return c1.(*net.TCPConn), c2.(*net.TCPConn)
	}
	left, a := pair()  // left talks to a
	b, right := pair() // b talks to right
	defer left.Close()
	defer right.Close()

	type result struct {
		ab, ba int64
		err    error
	}
	done := make(chan result, 1)
	go func() {
		ab, ba, err := transport.Splice(context.Background(), a, b, nil)
		done <- result{ab, ba, err}
	}()

	_, err := left.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, left.CloseWrite())
	got, err := io.ReadAll(right) // EOF arrives while right can still write
	require.NoError(t, err)
	require.Equal(t, "request", string(got))
	_, err = right.Write(pattern(1, 100_000))
	require.NoError(t, err)
	require.NoError(t, right.CloseWrite())
	got, err = io.ReadAll(left)
	require.NoError(t, err)
	require.Equal(t, pattern(1, 100_000), got)

	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, int64(7), r.ab)
	require.Equal(t, int64(100_000), r.ba)
	_, err = a.Write([]byte("x"))
	require.Error(t, err, "Splice closes both ends")
}

// TestSpliceBoundsAWriteAlreadyBlocked: a write into an end whose reader
// stopped is already blocked when the other direction ends. The half-close
// bound must cover it from that moment, not from the next write.
func TestSpliceBoundsAWriteAlreadyBlocked(t *testing.T) {
	left, a := transport.TCPPair(t)
	b, right := transport.TCPPair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := transport.Splice(context.Background(), a, b, &transport.SpliceOptions{HalfCloseTimeout: 200 * time.Millisecond})
		done <- err
	}()
	// left talks, right never reads: the splice's write into b blocks once
	// the socket buffers are full.
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := left.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the buffers fill
	// Now right ends its direction: from here the blocked write is bounded.
	require.NoError(t, right.CloseWrite())
	select {
	case err := <-done:
		require.ErrorIs(t, err, transport.ErrStalled)
	case <-time.After(waitLong):
		t.Fatal("the splice never let go of the blocked write")
	}
}

// TestSpliceEndsWithItsContext: cancelling the context aborts both ends;
// a TCP end is reset rather than closed cleanly.
func TestSpliceEndsWithItsContext(t *testing.T) {
	left, a := transport.TCPPair(t)
	b, right := transport.TCPPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := transport.Splice(ctx, a, b, nil)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(waitLong):
		t.Fatal("the splice outlived its context")
	}
	_, err := left.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = right.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)
}

// TestSpliceStallTimeout: with a stall bound, a write that makes no
// progress ends the splice even while both directions are open.
func TestSpliceStallTimeout(t *testing.T) {
	b, _ := transport.TCPPair(t) // nobody reads b's peer
	requireStalls(t, b, 200*time.Millisecond, "a stalled write held the splice")
}

// TestSpliceStallTimeoutIntoAStream: writes into a stream are watched by
// a timer, not a deadline. The write that blocks comes after others went
// through, with the bound armed before them; it must still end the splice,
// a bound after it began.
func TestSpliceStallTimeoutIntoAStream(t *testing.T) {
	cfg := &transport.Config{MaxStreamBuffer: 128 << 10, MaxFrameSize: 32 << 10}
	cli, srv, _, _ := sessionPair(t, cfg)
	st, peer := openAccepted(t, cli, srv) // peer is read no more: the stream's window runs out
	requireStalls(t, st, 300*time.Millisecond, "a write stuck on the stream's window held the splice")
	_, err := peer.Read(make([]byte, 1<<20))
	require.NoError(t, err, "what arrived before the stall is readable")
}

// TestSpliceAbortDoesNotWaitForAStuckEnd: when one end's connection is
// stuck, so that its reset cannot be sent, the other end's peer still
// learns of the abort at once, not when the stuck connection dies.
func TestSpliceAbortDoesNotWaitForAStuckEnd(t *testing.T) {
	stuckCli, stuckSrv, stuckTap, _ := sessionPair(t, nil)
	a, _ := openAccepted(t, stuckCli, stuckSrv)
	cli, srv, _, _ := sessionPair(t, nil)
	b, bPeer := openAccepted(t, cli, srv)

	release := stuckTap.holdWrites()
	defer release()
	done := make(chan error, 1)
	go func() {
		_, _, err := transport.Splice(context.Background(), a, b, &transport.SpliceOptions{StallTimeout: 200 * time.Millisecond})
		done <- err
	}()
	// What bPeer sends goes into a, whose connection takes nothing: the
	// write stalls and the splice aborts both ends.
	_, err := bPeer.Write(make([]byte, 1024))
	require.NoError(t, err)
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, bPeer)
		read <- err
	}()
	select {
	case err := <-read:
		// Sessions made without the upgrade have no reset extension: an
		// abort ends their streams with a FIN.
		require.NoError(t, err)
	case <-time.After(waitLong):
		t.Fatal("b's peer learned of the abort only after a's stuck connection")
	}
	select {
	case err := <-done:
		t.Fatalf("the splice returned (%v) before a's reset could be sent", err)
	default:
	}
	release()
	select {
	case err := <-done:
		require.ErrorIs(t, err, transport.ErrStalled)
	case <-time.After(waitLong):
		t.Fatal("the splice did not end once a's connection moved again")
	}
}

// openAccepted opens a stream on cli and returns it with its peer on srv,
// once one byte went through; both are closed at the test's end.
func openAccepted(t *testing.T, cli, srv *transport.Session) (st, peer *transport.Stream) {
	t.Helper()
	st, err := cli.Open()
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	_, err = st.Write([]byte("x")) // the SYN goes out with it
	require.NoError(t, err)
	peer, err = srv.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	_, err = io.ReadFull(peer, make([]byte, 1))
	require.NoError(t, err)
	return st, peer
}

// requireStalls splices a TCP connection that a writer floods into b,
// whose reader stopped, with a stall bound, and requires ErrStalled.
func requireStalls(t *testing.T, b io.ReadWriteCloser, bound time.Duration, hung string) {
	t.Helper()
	left, a := transport.TCPPair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := transport.Splice(context.Background(), a, b, &transport.SpliceOptions{StallTimeout: bound})
		done <- err
	}()
	go func() {
		chunk := make([]byte, 16<<10)
		for {
			if _, err := left.Write(chunk); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, transport.ErrStalled)
	case <-time.After(waitLong):
		t.Fatal(hung)
	}
}
