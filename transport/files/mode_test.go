package files_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport/files"
)

// TestDownloadClearsTheUmask: what a device sends as world-writable lands
// with the downloader's umask cleared, as cp and scp create files, for a
// single file as for a directory's entries.
func TestDownloadClearsTheUmask(t *testing.T) {
	dir := tempDir(t)
	cl := rig(t, rwServer(dir))
	ctx := testbroker.Ctx(t)
	opts := &files.FileOptions{Limits: files.Limits{UID: -1, GID: -1, Umask: 0o022}}

	src := filepath.Join(dir, "open.bin")
	writeRandom(t, src, 3, 4096)
	require.NoError(t, os.Chmod(src, 0o666))
	local := filepath.Join(tempDir(t), "open.bin")
	res, err := files.DownloadFile(ctx, cl, src, local, opts)
	require.NoError(t, err)
	require.True(t, res.Raw)
	requireMode(t, local, 0o644)

	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.Mkdir(tree, 0o755))
	writeRandom(t, filepath.Join(tree, "a.bin"), 4, 4096)
	require.NoError(t, os.Chmod(filepath.Join(tree, "a.bin"), 0o666))
	require.NoError(t, os.Chmod(tree, 0o777))
	out := filepath.Join(tempDir(t), "tree")
	_, err = files.DownloadFile(ctx, cl, tree, out, opts)
	require.NoError(t, err)
	requireMode(t, filepath.Join(out, "a.bin"), 0o644)
	requireMode(t, out, 0o755)
}

func requireMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, fi.Mode().Perm(), "%s", path)
}
