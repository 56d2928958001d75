package files

import "io"

// SetWrapFile makes s's uploads write through wrap.
func SetWrapFile(s *Server, wrap func(io.Writer) io.Writer) { s.wrapFile = wrap }

// Uploading returns the count of uploads s is serving.
func Uploading(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.busy)
}
