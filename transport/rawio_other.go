//go:build !linux

package transport

import "net"

// rawSocket is Linux's (rawio_linux.go); elsewhere a session's socket
// reads and writes as any net.Conn does.
type rawSocket struct{}

func rawSocketOf(net.Conn) *rawSocket { return nil }

func (s *rawSocket) read(p []byte) (int, error)  { panic("unreachable") }
func (s *rawSocket) write(p []byte) (int, error) { panic("unreachable") }
