package testutil

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// FreePort returns a 127.0.0.1 port that was free a moment ago, for a
// process that must be told where to listen.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr is FreePort as an address, "127.0.0.1:PORT".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

// UDPEcho listens on a fresh 127.0.0.1 UDP port and answers each datagram
// with "udp:" and the datagram, until the end of the test.
func UDPEcho(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(tb, err)
	served := make(chan struct{})
	tb.Cleanup(func() { pc.Close(); <-served })
	go func() {
		defer close(served)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("udp:"), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().String()
}
