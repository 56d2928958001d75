//go:build !linux

package transport

import (
	"net"
	"time"
)

// setUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist; the
// receive timeout of the keep-alive still finds a dead peer.
func setUserTimeout(net.Conn, time.Duration) {}
