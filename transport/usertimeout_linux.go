package transport

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout bounds how long data we sent may stay unacknowledged by
// the peer's TCP before the kernel gives up on the connection
// (TCP_USER_TIMEOUT). With a keep-alive frame sent every interval, a peer
// whose host or network died is found within interval + d, whatever the
// peer's own keep-alive settings. c may be a TLS connection, or any
// wrapper with a NetConn method, over TCP; other connections are left alone.
func setUserTimeout(c net.Conn, d time.Duration) {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok || d <= 0 {
		return
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}
