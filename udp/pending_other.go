//go:build !linux

package udp

import "syscall"

// pendingSize reports no waiting datagram where the next datagram's size
// cannot be asked for: every datagram then goes out in its own write.
func pendingSize(syscall.RawConn) int { return 0 }
