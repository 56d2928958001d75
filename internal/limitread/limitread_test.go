package limitread_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/limitread"
)

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(path, []byte("12345"), 0o600))
	b, err := limitread.File(path, 5)
	require.NoError(t, err)
	require.Equal(t, "12345", string(b))

	_, err = limitread.File(path, 4)
	var tl *limitread.TooLargeError
	require.ErrorAs(t, err, &tl)
	require.Equal(t, path+" is larger than 4 bytes", err.Error())

	_, err = limitread.File(filepath.Join(t.TempDir(), "missing"), 5)
	require.True(t, errors.Is(err, fs.ErrNotExist), "%v", err)
}
