package files_test

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport/files"
)

// TestRunAsUser: with RunAs, a transfer reads and writes what that user
// may, no more, and what it writes is the user's; the agent's own rights
// (root) do not leak into it.
func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("acting as another user needs root; the agent runs as root on devices")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "runas")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	secret := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte("root only"), 0o600))
	public := filepath.Join(dir, "public")
	require.NoError(t, os.WriteFile(public, []byte("anyone"), 0o644))
	drop := filepath.Join(dir, "drop")
	require.NoError(t, os.Mkdir(drop, 0o777))
	require.NoError(t, os.Chmod(drop, 0o777))

	srv := &files.Server{}
	srv.SetConfig(files.Config{Read: []string{dir}, Write: []string{dir},
		RunAs: &files.Credential{UID: nobody, GID: nobody}})
	cl := rig(t, srv)
	ctx := testbroker.Ctx(t)

	var buf bytes.Buffer
	_, err = cl.Download(ctx, secret, &buf, nil)
	require.ErrorContains(t, err, "permission denied")
	_, err = cl.Download(ctx, public, &buf, nil)
	require.NoError(t, err)
	require.Equal(t, "anyone", buf.String())

	up := func(path string) error {
		_, err := cl.Upload(ctx, path, bytes.NewReader([]byte("from nobody")),
			&files.UploadOptions{Size: 11, Name: "x", Mode: 0o644})
		return err
	}
	require.NoError(t, up(filepath.Join(drop, "mine")))
	fi, err := os.Stat(filepath.Join(drop, "mine"))
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	require.Equal(t, [2]uint32{nobody, nobody}, [2]uint32{st.Uid, st.Gid}, "the file is the user's")
	require.ErrorContains(t, up(filepath.Join(dir, "not-mine")), "permission denied")
	require.NoFileExists(t, filepath.Join(dir, "not-mine"))

	// The same server without RunAs has the agent's own rights.
	srv.SetConfig(files.Config{Read: []string{dir}, Write: []string{dir}})
	buf.Reset()
	_, err = cl.Download(ctx, secret, &buf, nil)
	require.NoError(t, err)
	require.Equal(t, "root only", buf.String())
}
