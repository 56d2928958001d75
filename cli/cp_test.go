//go:build linux

package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// randomFile writes n pseudo-random bytes at path and returns their SHA-256.
func randomFile(t testing.TB, path string, seed uint64, n int64) string {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), rand.NewChaCha8([32]byte{byte(seed)}), n)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return hex.EncodeToString(h.Sum(nil))
}

func sumOf(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func evalDir(t *testing.T) string {
	d, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	return d
}

func TestCP(t *testing.T) {
	f := newFleet(t)
	remote := evalDir(t) // the device's side
	require.NoError(t, os.Mkdir(filepath.Join(remote, "in"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(remote, "logs"), 0o755))
	f.addAgent("d1", "files:\n  read: [\""+remote+"\"]\n  write: [\""+filepath.Join(remote, "in")+"\"]\n")
	local := evalDir(t)

	// A file up, into an existing directory, and back down.
	src := filepath.Join(local, "fw.img")
	want := randomFile(t, src, 1, 3<<20+5)
	_, errOut, code := f.tether("", "cp", "--resume", src, "d1:"+filepath.Join(remote, "in")+"/")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, want, sumOf(t, filepath.Join(remote, "in", "fw.img")))
	_, errOut, code = f.tether("", "cp", "-z", "d1:"+filepath.Join(remote, "in", "fw.img"), filepath.Join(local, "back.img"))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, want, sumOf(t, filepath.Join(local, "back.img")))
	require.Empty(t, errOut, "quiet when stderr is not a terminal")

	// A directory tree, both ways.
	tree := filepath.Join(local, "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "sub"), 0o755))
	a := randomFile(t, filepath.Join(tree, "a.bin"), 2, 100_000)
	b := randomFile(t, filepath.Join(tree, "sub", "b.bin"), 3, 0)
	require.NoError(t, os.Symlink("sub/b.bin", filepath.Join(tree, "link")))
	_, errOut, code = f.tether("", "cp", tree, "d1:"+filepath.Join(remote, "in", "tree"))
	require.Equal(t, ExitUsage, code, "a directory needs -r")
	require.Contains(t, errOut, "use -r")
	_, errOut, code = f.tether("", "cp", "-r", tree, "d1:"+filepath.Join(remote, "in", "tree"))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, a, sumOf(t, filepath.Join(remote, "in", "tree", "a.bin")))
	l, err := os.Readlink(filepath.Join(remote, "in", "tree", "link"))
	require.NoError(t, err)
	require.Equal(t, "sub/b.bin", l)
	_, errOut, code = f.tether("", "cp", "-r", "--no-compress", "d1:"+filepath.Join(remote, "in", "tree"), filepath.Join(local, "copy"))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, a, sumOf(t, filepath.Join(local, "copy", "a.bin")))
	require.Equal(t, b, sumOf(t, filepath.Join(local, "copy", "sub", "b.bin")))
	_, errOut, code = f.tether("", "cp", "d1:"+filepath.Join(remote, "in", "tree"), filepath.Join(local, "copy2"))
	require.Equal(t, ExitUsage, code, "a remote directory needs -r")
	require.Contains(t, errOut, "use -r")

	// Refusals, with their exit codes.
	_, errOut, code = f.tether("", "cp", src, "d1:"+filepath.Join(remote, "logs", "x"))
	require.Equal(t, ExitRemote, code, "upload outside files.write")
	require.Contains(t, errOut, "not allowed")
	_, errOut, code = f.tether("", "cp", "d1:relative/path", local)
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "relative")
	_, errOut, code = f.tether("", "cp", src, filepath.Join(local, "x"))
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "DEVICE:/absolute/path")
	_, errOut, code = f.tether("", "cp", src, "gone:/tmp/x")
	require.Equal(t, ExitOffline, code, errOut)
	_, errOut, code = runTether(t, baseEnv(t), "", f.args(f.limited, "cp", src, "d1:/tmp/x")...)
	require.Equal(t, ExitForbidden, code, errOut)
}

func TestCPErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("download: %w: sums differ", files.ErrChecksum), ExitChecksum},
		{fmt.Errorf("%w (write: broken pipe)", transport.ErrConnLost), ExitLost},
		{&transport.ResetError{Reason: "lost the device"}, ExitLost},
		{files.ErrNoFinalAnswer, ExitRemote},
		{&wire.RemoteError{Reason: "not allowed: upload /etc"}, ExitRemote},
	} {
		code, msg := describe(cpError(tc.err), msgContext{})
		require.Equal(t, tc.code, code, "%v: %s", tc.err, msg)
	}
	for _, tc := range []struct {
		err   error
		retry bool
	}{
		{fmt.Errorf("%w (x)", transport.ErrConnLost), true},
		{&transport.ResetError{}, true},
		{fmt.Errorf("%w: x", files.ErrChecksum), false},
		{&wire.RemoteError{Reason: "no space left on device"}, false},
		{usageErrorf("use -r"), false},
	} {
		require.Equal(t, tc.retry, retryable(tc.err), "%v", tc.err)
	}
	for _, tc := range []struct {
		in, device, path string
		remote           bool
	}{
		{"d1:/var/log", "d1", "/var/log", true},
		{"./a:b", "", "./a:b", false},
		{"/abs/a:b", "", "/abs/a:b", false},
		{":x", "", ":x", false},
		{"file.txt", "", "file.txt", false},
	} {
		d, p, r := splitRemote(tc.in)
		require.Equal(t, [3]any{tc.device, tc.path, tc.remote}, [3]any{d, p, r}, tc.in)
	}
}

// TestCPResumesAPartialDownload: a partial file left by an earlier run is
// continued from its length, which the edge's audit record shows.
func TestCPResumesAPartialDownload(t *testing.T) {
	f := newFleet(t)
	remote := evalDir(t)
	f.addAgent("d1", "files: {read: [\""+remote+"\"]}\n")
	src := filepath.Join(remote, "big.bin")
	want := randomFile(t, src, 4, 8<<20)
	fi, err := os.Stat(src)
	require.NoError(t, err)

	local := filepath.Join(evalDir(t), "big.bin")
	body, err := os.ReadFile(src)
	require.NoError(t, err)
	const held = 3 << 20
	require.NoError(t, os.WriteFile(local+files.PartialSuffix, body[:held], 0o600))
	side := fmt.Sprintf(`{"path":%q,"size":%d,"mtime_ns":%d}`, src, fi.Size(), fi.ModTime().UnixNano())
	require.NoError(t, os.WriteFile(local+files.PartialSuffix+".json", []byte(side), 0o600))

	_, errOut, code := f.tether("", "cp", "--resume", "d1:"+src, local)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, want, sumOf(t, local))
	_, err = os.Stat(local + files.PartialSuffix)
	require.True(t, os.IsNotExist(err), "the partial file is renamed into place")
	require.Eventually(t, func() bool {
		return strings.Contains(f.edge.Stdout(), `"event":"stream_close"`) &&
			strings.Contains(f.edge.Stdout(), fmt.Sprintf(`"offset":%d`, held)) &&
			strings.Contains(f.edge.Stdout(), `"sha256":"`+want+`"`)
	}, 10*time.Second, 50*time.Millisecond, "the audit shows the resume and the checksum:\n%s", f.edge.Stdout())
}

// TestCPProgressOnATerminal runs tether cp with stderr on a pseudo-terminal:
// the progress bar names the file and counts bytes.
func TestCPProgressOnATerminal(t *testing.T) {
	f := newFleet(t)
	remote := evalDir(t)
	f.addAgent("d1", "files: {read: [\""+remote+"\"]}\n")
	src := filepath.Join(remote, "image.bin")
	want := randomFile(t, src, 5, 16<<20)
	local := filepath.Join(evalDir(t), "image.bin")

	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	defer ptmx.Close()
	cmd := exec.Command(binPath("tether"), f.args(f.token, "cp", "d1:"+src, local)...)
	cmd.Env = baseEnv(t)
	cmd.Stderr = tty
	out := make(chan string, 1)
	const end = "END-OF-TEST-OUTPUT"
	go func() {
		// Read up to a marker written after tether exits: what tether wrote
		// comes before it.
		var b []byte
		buf := make([]byte, 4096)
		for !strings.Contains(string(b), end) {
			n, err := ptmx.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		out <- string(b)
	}()
	require.NoError(t, cmd.Run())
	_, err = io.WriteString(tty, end+"\n")
	require.NoError(t, err)
	require.Equal(t, want, sumOf(t, local))
	shown := <-out
	tty.Close()
	require.Contains(t, shown, "image.bin", "the bar names the file")
	require.Contains(t, shown, "/17 MB", "the bar counts the bytes of the 16 MiB file:\n%q", shown)
}
