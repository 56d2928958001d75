//go:build unix

package tcp

import (
	"errors"
	"net"
	"syscall"
)

// readyBytes reads into buf what the application already sent on c,
// without waiting for more: 0 when nothing is there yet (or c is not a
// socket). An error other than "nothing yet" is the connection's, which
// the kernel reports once: the caller must act on it.
func readyBytes(c net.Conn, buf []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var (
		n    int
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), buf)
		return true // never wait
	})
	switch {
	case err != nil:
		return 0, err
	case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EINTR):
		return 0, nil
	case rerr != nil:
		return 0, rerr
	}
	return max(n, 0), nil
}
