//go:build !unix

package tcp

import "net"

// readyBytes reads nothing ahead on this platform: the first bytes follow
// the opening message in a frame of their own.
func readyBytes(net.Conn, []byte) (int, error) { return 0, nil }
