package files

import "io"

// SetWrapFile makes s's uploads write through wrap.
func SetWrapFile(s *Server, wrap func(io.Writer) io.Writer) { s.wrapFile = wrap }
