//go:build !linux

package transport

import "net"

// rawSocket is Linux's (rawio_linux.go); elsewhere a session's socket
// and a spliced TCP connection read and write as any net.Conn does.
type rawSocket struct{}

func rawSocketOf(net.Conn) *rawSocket { return nil }

func (s *rawSocket) Read(p []byte) (int, error)  { panic("unreachable") }
func (s *rawSocket) Write(p []byte) (int, error) { panic("unreachable") }
