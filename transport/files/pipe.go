package files

import (
	"hash"
	"io"
)

// pipeBuf is the size of each of the two buffers of copyHashed, and so of
// its writes.
const pipeBuf = 1 << 20

// copyHashed copies src to dst until src's EOF, and hashes what it copies
// with h, in two stages: this goroutine reads a buffer and hashes it while
// a second one writes the previous buffer to dst. The two buffers bound
// what is held. It returns the bytes written to dst and the first error,
// as io.Copy does: a failed write stops the reading, and a failed read
// returns once every byte read before it is written.
func copyHashed(dst io.Writer, src io.Reader, h hash.Hash) (int64, error) {
	free := make(chan []byte, 2)
	free <- make([]byte, pipeBuf)
	free <- make([]byte, pipeBuf)
	full := make(chan []byte, 2)
	failed := make(chan struct{}) // closed after a failed write
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for b := range full {
			if r.err == nil {
				n, err := dst.Write(b)
				r.n += int64(n)
				if err == nil && n < len(b) {
					err = io.ErrShortWrite
				}
				if err != nil {
					r.err = err
					close(failed)
				}
			}
			free <- b[:cap(b)]
		}
		done <- r
	}()
	var rerr error
	for rerr == nil {
		var b []byte
		select {
		case b = <-free:
		case <-failed:
		}
		if b == nil {
			break
		}
		n, err := readFill(src, b)
		if n > 0 {
			h.Write(b[:n])
			full <- b[:n]
		} else {
			free <- b
		}
		rerr = err
	}
	close(full)
	w := <-done
	switch {
	case w.err != nil:
		return w.n, w.err
	case rerr == io.EOF:
		return w.n, nil
	}
	return w.n, rerr
}

// readFill reads into b until it is full or r fails; io.EOF ends it.
func readFill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
