package transport_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/tetherhq/tether/transport"
)

// streamPipe opens a stream on a fresh TLS session pair and returns both
// ends, in the shape of nettest.TestConn's MakePipe.
func streamPipe(t *testing.T) (c1, c2 net.Conn, stop func(), err error) {
	cli, srv, _, _ := sessionPair(t, nil)
	a, err := cli.Open()
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := srv.Accept()
	if err != nil {
		a.Close()
		return nil, nil, nil, err
	}
	stop = func() {
		a.Close()
		b.Close()
		cli.Close()
		srv.Close()
	}
	return a, b, stop, nil
}

// TestStreamNetConn runs the net.Conn conformance suite on a stream pair:
// I/O, ping-pong with overlapping writers, deadlines (past, present,
// future, moved while blocked), concurrent methods and Close.
func TestStreamNetConn(t *testing.T) {
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return streamPipe(t) })
}

// TestStreamPastWriteDeadline: a write past its deadline sends nothing,
// and once the deadline is moved the stream carries exactly the bytes
// written after it.
func TestStreamPastWriteDeadline(t *testing.T) {
	a, b, stop, err := streamPipe(t)
	require.NoError(t, err)
	defer stop()
	for i := 0; i < 50; i++ {
		require.NoError(t, a.SetWriteDeadline(time.Now().Add(-time.Second)))
		n, err := a.Write([]byte("lost"))
		require.Equal(t, 0, n)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	}
	require.NoError(t, a.SetWriteDeadline(time.Time{}))
	_, err = a.Write([]byte("kept"))
	require.NoError(t, err)
	require.NoError(t, a.(*transport.Stream).CloseWrite())
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	require.Equal(t, "kept", string(got))
}

// TestStreamWriteBufferAfterTimeout: writers that time out change their
// buffer at once, which must not race with the stream still sending it
// (the race detector reports it) nor change what the peer receives.
func TestStreamWriteBufferAfterTimeout(t *testing.T) {
	a, b, stop, err := streamPipe(t)
	require.NoError(t, err)
	defer stop()
	received := make(chan []byte, 1)
	go func() {
		got, _ := io.ReadAll(b)
		received <- got
	}()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := bytes.Repeat([]byte{'x'}, 4096)
			for range 100 {
				_ = a.SetWriteDeadline(time.Now().Add(time.Millisecond))
				_, err := a.Write(buf)
				clear(buf) // the caller owns buf again once Write returned
				copy(buf, bytes.Repeat([]byte{'x'}, 4096))
				if err != nil {
					require.ErrorIs(t, err, os.ErrDeadlineExceeded)
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, a.SetWriteDeadline(time.Time{}))
	require.NoError(t, a.(*transport.Stream).CloseWrite())
	got := <-received
	require.Equal(t, -1, bytes.IndexFunc(got, func(r rune) bool { return r != 'x' }), "the peer received bytes the writers never wrote")
}

// TestStreamDeadlineErrors: a read or a write past its deadline fails with
// an error that wraps os.ErrDeadlineExceeded and is a net.Error whose
// Timeout is true, as net.Conn requires.
func TestStreamDeadlineErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func(c net.Conn) error
	}{
		{"read", func(c net.Conn) error {
			require.NoError(t, c.SetReadDeadline(time.Now().Add(-time.Second)))
			_, err := c.Read(make([]byte, 1))
			return err
		}},
		{"read blocked", func(c net.Conn) error {
			require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
			_, err := c.Read(make([]byte, 1))
			return err
		}},
		{"write", func(c net.Conn) error {
			require.NoError(t, c.SetWriteDeadline(time.Now().Add(-time.Second)))
			_, err := c.Write(make([]byte, 1))
			return err
		}},
		{"write blocked on the window", func(c net.Conn) error {
			require.NoError(t, c.SetDeadline(time.Now().Add(50*time.Millisecond)))
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return err
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, stop, err := streamPipe(t)
			require.NoError(t, err)
			defer stop()
			err = tc.op(a)
			require.Error(t, err)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			var ne net.Error
			require.True(t, errors.As(err, &ne), "got %T %v; want a net.Error", err, err)
			require.True(t, ne.Timeout(), "got Timeout() false for %v", err)
		})
	}
}
