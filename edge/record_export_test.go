package edge

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

// FailRecordingWrites makes the recordings s creates from now on fail
// their writes once they hold after bytes: the next write fails with
// ENOSPC; with once, the writes after it succeed again.
func FailRecordingWrites(s *Server, after int64, once bool) {
	s.init()
	s.rec.create = func(path string) (recFile, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		return &failingFile{File: f, after: after, once: once}, nil
	}
}

type failingFile struct {
	*os.File
	mu      sync.Mutex
	written int64
	after   int64
	once    bool
	failed  bool
}

func (f *failingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.written >= f.after && (!f.once || !f.failed) {
		f.failed = true
		// Half the bytes go in, as a disk that filled up mid-write.
		n, _ := f.File.Write(p[:len(p)/2])
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: errors.Join(syscall.ENOSPC)}
	}
	n, err := f.File.Write(p)
	f.written += int64(n)
	return n, err
}
