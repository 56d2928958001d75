// Package limitread reads whole files that must stay small: configuration
// files, key files and the edge's state files, each with a bound of its
// own, so that a file that grew or was replaced by something else fails
// with a clear error instead of filling memory.
package limitread

import (
	"fmt"
	"io"
	"os"
)

// TooLargeError is the error of File for a file longer than its bound.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", e.Path, e.Limit)
}

// File reads the file at path, which must hold at most limit bytes. It
// reads at most limit+1 of them; a longer file is a *TooLargeError. Other
// errors are those of os.Open and Read.
func File(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	return b, nil
}
