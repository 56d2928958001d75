//go:build windows

package cli

import (
	"errors"

	"golang.org/x/sys/windows"
)

// connRefused reports whether a dial failed because nothing listens there:
// Winsock reports its own error numbers, not the syscall package's.
func connRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }

// noRoute reports whether a dial failed because the network has no route
// to the host.
func noRoute(err error) bool {
	return errors.Is(err, windows.WSAEHOSTUNREACH) || errors.Is(err, windows.WSAENETUNREACH)
}
