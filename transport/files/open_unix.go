//go:build !windows

package files

import "syscall"

// Open flags: oNoFollow refuses a symbolic link as the last name, and
// oNonBlock keeps a FIFO swapped in after a stat from blocking the open.
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)
