package files

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// chunkedReader returns its data in pieces of random size, as a stream's
// frames come.
type chunkedReader struct {
	data []byte
	rnd  *rand.Rand
	err  error // returned with the last piece instead of io.EOF
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), 1+c.rnd.IntN(70000))], c.data)
	c.data = c.data[k:]
	return k, nil
}

// writeLog records where each write of a file that starts at off ends.
type writeLog struct {
	bytes.Buffer
	off  int64
	ends []int64
}

func (w *writeLog) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	w.ends = append(w.ends, w.off+int64(w.Len()))
	return n, err
}

// TestCopyAlignedEndsWritesOnChunks: whatever pieces the reads bring,
// every write but the last ends at a multiple of writeChunk in the file,
// from an aligned offset or not, and every byte arrives in order.
func TestCopyAlignedEndsWritesOnChunks(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, off := range []int64{0, 1000, 3*writeChunk + 5, writeChunk - 1} {
		data := make([]byte, 2<<20+12345)
		for i := range data {
			data[i] = byte(rnd.Uint32())
		}
		w := &writeLog{off: off}
		n, err := copyAligned(w, &chunkedReader{data: data, rnd: rnd}, off, make([]byte, 8*writeChunk))
		require.NoError(t, err)
		require.Equal(t, int64(len(data)), n)
		require.True(t, bytes.Equal(data, w.Bytes()), "offset %d: the bytes differ", off)
		require.Greater(t, len(w.ends), 8)
		for i, end := range w.ends[:len(w.ends)-1] {
			require.Zero(t, end%writeChunk, "offset %d: write %d ends at %d", off, i, end)
		}
	}
}

// TestCopyAlignedPassesErrorsOn: a read error, io.ErrUnexpectedEOF from
// the reader included, ends the copy with that error after the bytes
// before it were written; only io.EOF is a clean end.
func TestCopyAlignedPassesErrorsOn(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, cause := range []error{io.ErrUnexpectedEOF, errors.New("stream reset")} {
		w := &writeLog{}
		n, err := copyAligned(w, &chunkedReader{data: make([]byte, 100000), rnd: rnd, err: cause}, 0, make([]byte, 4*writeChunk))
		require.ErrorIs(t, err, cause)
		require.Equal(t, int64(100000), n)
		require.Equal(t, 100000, w.Len())
	}
}
