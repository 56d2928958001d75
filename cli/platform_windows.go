//go:build windows

package cli

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// othersCanRead is false on Windows: who may read a file is in its ACL,
// and the mode bits Go reports (0666, or 0444 when read-only) say nothing
// about other users, so a warning based on them would always be wrong.
func othersCanRead(os.FileInfo) bool { return false }

// connRefused reports whether a dial failed because nothing listens there:
// Winsock reports its own error numbers, not the syscall package's.
func connRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }

// noRoute reports whether a dial failed because the network has no route
// to the host.
func noRoute(err error) bool {
	return errors.Is(err, windows.WSAEHOSTUNREACH) || errors.Is(err, windows.WSAENETUNREACH)
}

// umask is zero on Windows, which has no mode creation mask: a file's
// mode there only says whether it is read-only.
func umask() fs.FileMode { return 0 }
