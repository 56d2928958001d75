//go:build !windows

package cli

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// othersCanRead reports whether users other than the owner may read the
// file, by its mode bits.
func othersCanRead(fi os.FileInfo) bool { return fi.Mode().Perm()&0o077 != 0 }

// connRefused reports whether a dial failed because nothing listens there.
func connRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// noRoute reports whether a dial failed because the network has no route
// to the host.
func noRoute(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// umask returns the process's file mode creation mask, which downloads
// clear from the modes the device sends, as scp does. Reading it means
// setting it: the most restrictive mask stands in for the moment between.
func umask() fs.FileMode {
	m := syscall.Umask(0o077)
	syscall.Umask(m)
	return fs.FileMode(m)
}
