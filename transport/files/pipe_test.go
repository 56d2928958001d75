package files

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// failAfter accepts n bytes, then fails every write.
type failAfter struct {
	n   int
	got bytes.Buffer
}

var errDiskFull = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.got.Len()+len(p) > f.n {
		k := f.n - f.got.Len()
		f.got.Write(p[:k])
		return k, errDiskFull
	}
	return f.got.Write(p)
}

func TestCopyHashed(t *testing.T) {
	data := make([]byte, 5*pipeBuf/2+17)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(data)
	errCut := errors.New("stream cut")
	for _, tc := range []struct {
		name    string
		src     io.Reader
		dst     *failAfter
		wantN   int
		wantErr error
	}{
		{"whole", bytes.NewReader(data), &failAfter{n: len(data)}, len(data), nil},
		{"one byte a read", iotest.OneByteReader(bytes.NewReader(data[:3000])), &failAfter{n: len(data)}, 3000, nil},
		{"empty", bytes.NewReader(nil), &failAfter{n: len(data)}, 0, nil},
		{"read fails: what came before is written", io.MultiReader(bytes.NewReader(data[:pipeBuf+5]), iotest.ErrReader(errCut)), &failAfter{n: len(data)}, pipeBuf + 5, errCut},
		{"data with the error", iotest.DataErrReader(bytes.NewReader(data[:100])), &failAfter{n: len(data)}, 100, nil},
		{"write fails", bytes.NewReader(data), &failAfter{n: pipeBuf + 9}, pipeBuf + 9, errDiskFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sha256.New()
			n, err := copyHashed(tc.dst, tc.src, h)
			require.ErrorIs(t, err, tc.wantErr)
			if tc.wantErr == nil {
				require.NoError(t, err)
			}
			require.Equal(t, int64(tc.wantN), n, "bytes written")
			require.True(t, bytes.Equal(data[:tc.wantN], tc.dst.got.Bytes()), "the bytes written are the first %d of the source", tc.wantN)
			if err == nil {
				want := sha256.Sum256(data[:tc.wantN])
				require.Equal(t, want[:], h.Sum(nil))
			}
		})
	}
}
