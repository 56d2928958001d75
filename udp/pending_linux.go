package udp

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// pendingSize returns the size of the next datagram waiting on the socket,
// or 0 when none is waiting (or the size cannot be known). Linux answers
// SIOCINQ on a UDP socket with the next datagram's length, so a reader can
// take what is already there without blocking.
func pendingSize(rc syscall.RawConn) int {
	if rc == nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
