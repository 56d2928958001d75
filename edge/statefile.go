package edge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tetherhq/tether/internal/limitread"
)

// The files a single edge keeps its state in (FileLastSeen,
// FileWebRevocations): read whole when it starts, replaced whole or
// appended to as it runs.

// readBounded reads the file at path, which must hold at most max bytes;
// nil when it does not exist.
func readBounded(path string, max int64) ([]byte, error) {
	b, err := limitread.File(path, max)
	var tl *limitread.TooLargeError
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case errors.As(err, &tl):
		return nil, fmt.Errorf("%w: it is not one this edge wrote; move it away", err)
	}
	return b, err
}

// writeFileAtomic replaces the file at path with b, mode 0600 (see
// replaceFile).
func writeFileAtomic(path string, b []byte) error {
	f, err := replaceFile(path, b)
	if err != nil {
		return err
	}
	return f.Close()
}

// replaceFile replaces the file at path with b, mode 0600: a new file in
// the same directory, synced, then renamed over it. It returns the new
// file, open for writing at its end.
func replaceFile(path string, b []byte) (*os.File, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*") // 0600
	if err != nil {
		return nil, err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	// The rename is durable once the directory is synced, where the
	// system allows it.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return tmp, nil
}
