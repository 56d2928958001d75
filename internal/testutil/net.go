package testutil

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// FreePort returns a 127.0.0.1 port, free for TCP and UDP a moment ago,
// for a process that must be told where to listen (and listen there again
// after a restart). It is drawn from below the kernel's ephemeral range,
// so no outgoing connection and no listener on port 0 can take it in the
// meantime; only another explicit bind could. It never returns a port
// twice in one process, though the port stays free until its process
// binds it: a cluster test asks for a dozen before it starts an edge.
// Where a test can hold the socket itself, it should listen on port 0
// instead.
func FreePort(tb testing.TB) int {
	tb.Helper()
	lo := ephemeralLow()
	const base = 10000
	given.Lock()
	defer given.Unlock()
	for range 200 {
		port := base + rand.IntN(lo-base)
		if given.ports[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		given.ports[port] = true
		return port
	}
	tb.Fatal("no free port below the ephemeral range")
	return 0
}

// given holds the ports FreePort has returned in this process.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 12000 {
				return lo
			}
		}
	}
	return 32768
}

// FreeAddr is FreePort as an address, "127.0.0.1:PORT".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

// ClosedAddr returns a 127.0.0.1 TCP address that refuses connections
// until the end of the test: a socket is bound there but never listens,
// so no other process can take the port and start listening.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(tb, err)
	tb.Cleanup(func() { syscall.Close(fd) })
	require.NoError(tb, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := syscall.Getsockname(fd)
	require.NoError(tb, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
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
