package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSocketsUseRawCalls(t *testing.T) {
	c, _ := TCPPair(t)
	require.NotNil(t, GatherRecords(c).(*recordConn).raw, "a session's TCP socket")
	require.NotNil(t, rawTCP(c), "a spliced TCP connection")
	require.NotNil(t, rawTCP(wrappedTCP{c}), "a TCP connection with an abort of its own")
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	require.Nil(t, GatherRecords(a).(*recordConn).raw, "not a socket: plain reads and writes")
	require.Nil(t, rawTCP(a))
}

// wrappedTCP is a TCP connection with more to it, as the CLI's forwarded
// connections are (tcpEnd).
type wrappedTCP struct{ *net.TCPConn }

func (w wrappedTCP) TCP() *net.TCPConn { return w.TCPConn }

// The raw reads and writes behave as net.Conn's do: the same bytes, the
// same waits, the same errors, word for word.
func TestRawSocketIsANetConn(t *testing.T) {
	t.Run("bytes both ways, then the end", func(t *testing.T) {
		c, p := TCPPair(t)
		rs := rawSocketOf(c)
		n, err := rs.Write([]byte("hello"))
		require.NoError(t, err)
		require.Equal(t, 5, n)
		got := make([]byte, 5)
		_, err = io.ReadFull(p, got)
		require.NoError(t, err)
		require.Equal(t, "hello", string(got))

		_, err = p.Write([]byte("world"))
		require.NoError(t, err)
		require.NoError(t, p.CloseWrite())
		all, err := io.ReadAll(rs)
		require.NoError(t, err, "the peer's end is io.EOF")
		require.Equal(t, "world", string(all))
		n, err = rs.Read(nil)
		require.NoError(t, err, "an empty read")
		require.Zero(t, n)
	})

	t.Run("a full socket waits for the peer, within the write deadline", func(t *testing.T) {
		c, p := TCPPair(t)
		rs := rawSocketOf(c)
		big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB: more than the sockets hold
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
		n, err := rs.Write(big)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Positive(t, n)
		require.Less(t, n, len(big))
		_, netErr := c.Write(big[n:])
		require.EqualError(t, err, netErr.Error(), "the same words as net's")
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())

		// The peer gets exactly what write counted, then what a write
		// with room sends in full.
		require.NoError(t, c.SetWriteDeadline(time.Time{}))
		got := make([]byte, n)
		_, err = io.ReadFull(p, got)
		require.NoError(t, err)
		require.True(t, bytes.Equal(big[:n], got), "the bytes written before the deadline")
		done := make(chan error, 1)
		go func() {
			_, err := rs.Write(big[:8<<20])
			done <- err
		}()
		got = make([]byte, 8<<20)
		_, err = io.ReadFull(p, got)
		require.NoError(t, err)
		require.NoError(t, <-done)
		require.True(t, bytes.Equal(big[:8<<20], got), "a write that waited for room")
	})

	t.Run("a read waits within the read deadline", func(t *testing.T) {
		c, _ := TCPPair(t)
		rs := rawSocketOf(c)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		_, err := rs.Read(make([]byte, 8))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		_, netErr := c.Read(make([]byte, 8))
		require.EqualError(t, err, netErr.Error())

		// A deadline moved while a read waits, as the keep-alive does.
		require.NoError(t, c.SetReadDeadline(time.Time{}))
		done := make(chan error, 1)
		go func() {
			_, err := rs.Read(make([]byte, 8))
			done <- err
		}()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		require.ErrorIs(t, <-done, os.ErrDeadlineExceeded)
	})

	t.Run("a closed socket", func(t *testing.T) {
		c, _ := TCPPair(t)
		rs := rawSocketOf(c)
		require.NoError(t, c.Close())
		_, err := rs.Read(make([]byte, 8))
		require.ErrorIs(t, err, net.ErrClosed)
		_, netErr := c.Read(make([]byte, 8))
		require.EqualError(t, err, netErr.Error())
		_, err = rs.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed)
	})

	t.Run("a reset by the peer", func(t *testing.T) {
		c, p := TCPPair(t)
		rs := rawSocketOf(c)
		require.NoError(t, p.SetLinger(0))
		require.NoError(t, p.Close()) // a close with linger 0 sends a reset
		_, err := rs.Read(make([]byte, 8))
		require.ErrorIs(t, err, syscall.ECONNRESET)
		// As net's: the system call's name is in the words.
		require.EqualError(t, err, "read tcp "+c.LocalAddr().String()+"->"+c.RemoteAddr().String()+": read: connection reset by peer")
		_, err = rs.Write([]byte("x"))
		require.True(t, errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET), "write after the reset: %v", err)
	})
}
