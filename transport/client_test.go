package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

func TestOpenStreamAnswers(t *testing.T) {
	b, pki := newBroker(t, nil)
	hold := make(chan struct{})
	defer close(hold)
	startDevice(t, b, pki, nil, map[wire.MsgType]device.Handler{
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
	cl := dialClient(t, b, pki, nil)

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
		slow := dialClient(t, b, pki, &transport.Config{OpenTimeout: 50 * time.Millisecond})
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

// TestListenTCP forwards local connections through the device, like ssh -L.
func TestListenTCP(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	target := testutil.TCPServer(t, patternAfterEOF)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fw := &tcp.Forward{Listener: ln, Opener: cl, Remote: target}
	require.NoError(t, fw.Start(testCtx(t)))
	for i := range 3 {
		c, err := net.Dial("tcp", fw.Addr().String())
		require.NoError(t, err)
		_, err = c.Write([]byte{0, 0, 0x10, 0, byte(i)})
		require.NoError(t, err)
		require.NoError(t, c.(*net.TCPConn).CloseWrite())
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, pattern(byte(i), 0x1000), got)
		c.Close()
	}
	require.NoError(t, fw.Close())
	<-fw.Done()
	require.NoError(t, fw.Err())
	_, err = net.Dial("tcp", fw.Addr().String())
	require.Error(t, err, "the listener is closed")
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

// flakyListener fails its first Accept calls with EMFILE, as a process out
// of descriptors does, then accepts from the real listener.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestForwardSurvivesAcceptErrors: a transient Accept error (out of file
// descriptors) pauses the forward; it does not end it.
func TestForwardSurvivesAcceptErrors(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(3)
	f := &tcp.Forward{Listener: fl, Opener: cl, Remote: target, Logger: testLogger(t)}
	require.NoError(t, f.Start(testCtx(t)))
	defer f.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("after emfile"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "echo:AFTER EMFILE", string(got))
	require.NoError(t, f.Err())
}
