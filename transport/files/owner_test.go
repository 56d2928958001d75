package files_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/files"
)

// TestExtractGivesDirectoriesAndLinksToTheOwner: with an owner set (an
// agent running as root with files.owner), the directories and links an
// upload creates are the owner's too, the parents that the archive only
// implies included, so that the owner may write in them.
func TestExtractGivesDirectoriesAndLinksToTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may give files to another user")
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755}))
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "top/sub/deep/f.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2}))
	_, err := tw.Write([]byte("hi"))
	require.NoError(t, err)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "top/made/", Typeflag: tar.TypeDir, Mode: 0o755}))
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "top/link", Typeflag: tar.TypeSymlink, Linkname: "sub"}))
	require.NoError(t, tw.Close())

	dir := tempDir(t)
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	const nobody = 65534
	_, _, err = files.Extract(root, "out", &b, files.Limits{UID: nobody, GID: nobody})
	require.NoError(t, err)
	for _, name := range []string{"out", "out/sub", "out/sub/deep", "out/sub/deep/f.txt", "out/made", "out/link"} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		require.Equal(t, [2]uint32{nobody, nobody}, [2]uint32{st.Uid, st.Gid}, "%s is not the owner's", name)
	}
}
