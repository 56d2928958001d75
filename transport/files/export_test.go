package files

import (
	"io"
	"os"
	"time"
)

// SetWrapFile makes s's uploads write through wrap.
func SetWrapFile(s *Server, wrap func(io.Writer) io.Writer) { s.wrapFile = wrap }

// Uploading returns the count of uploads s is serving.
func Uploading(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.busy)
}

// SetKeepAlive sets how often s sends one held-back byte of a resumed
// download while it hashes the file.
func SetKeepAlive(s *Server, d time.Duration) { s.keepAlive = d }

// SetSyncFS makes extractions sync through f until the test ends.
func SetSyncFS(t interface{ Cleanup(func()) }, f func(dir *os.File) error) {
	old := syncFS
	syncFS = f
	t.Cleanup(func() { syncFS = old })
}
