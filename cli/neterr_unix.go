//go:build !windows

package cli

import (
	"errors"
	"syscall"
)

// connRefused reports whether a dial failed because nothing listens there.
func connRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// noRoute reports whether a dial failed because the network has no route
// to the host.
func noRoute(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}
