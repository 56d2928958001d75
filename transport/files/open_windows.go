//go:build windows

package files

// Windows has neither flag: os.Root still keeps every open beneath its
// root, and there are no FIFOs to block on.
const (
	oNoFollow = 0
	oNonBlock = 0
)
