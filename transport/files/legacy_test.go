package files_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// referenceDevice is a device handler that speaks exactly the qbee-v1
// file transfer: it reads direction and path (and ignores anything else),
// answers OK with an empty payload, then sends a gzip-compressed tar of
// the path, or reads one and extracts it and answers OK. It records the
// requests it saw.
type referenceDevice struct {
	requests []string
}

func (d *referenceDevice) serve(_ context.Context, st *transport.Stream, payload []byte) error {
	d.requests = append(d.requests, string(payload))
	var req struct {
		Direction int    `json:"direction"`
		Path      string `json:"path"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return err
	}
	if err := wire.WriteOK(st, nil); err != nil {
		return err
	}
	if req.Direction == 0 {
		zw := gzip.NewWriter(st)
		tw := tar.NewWriter(zw)
		base := filepath.Dir(req.Path)
		err := filepath.Walk(req.Path, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			link := ""
			if fi.Mode()&os.ModeSymlink != 0 {
				if link, err = os.Readlink(p); err != nil {
					return err
				}
				// Links that point outside the base are skipped.
				if j := filepath.Join(filepath.Dir(p), link); filepath.IsAbs(link) || !strings.HasPrefix(j, req.Path+"/") {
					return nil
				}
			}
			hdr, err := tar.FileInfoHeader(fi, link)
			if err != nil {
				return err
			}
			hdr.Name, _ = filepath.Rel(base, p)
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(tw, f)
				return err
			}
			return nil
		})
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			// GNU tar rounds an archive up to a record of 10 KiB.
			_, err = zw.Write(make([]byte, 10240-2*512))
		}
		if err == nil {
			err = zw.Close()
		}
		return err
	}
	// Upload: one gzip member of tar; a single file is written at the path.
	zr, err := gzip.NewReader(st)
	if err != nil {
		return err
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		return err
	}
	dst := req.Path
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		dst = filepath.Join(dst, filepath.Base(hdr.Name))
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, zr)
	return wire.WriteOK(st, nil)
}

func TestLegacyDeviceFallback(t *testing.T) {
	dir := tempDir(t)
	ref := &referenceDevice{}
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{wire.MsgFileTransfer: ref.serve})
	cl := b.DialClient(t, nil)
	ctx := testbroker.Ctx(t)

	// Download of a file: the archive is extracted to the local target.
	src := filepath.Join(dir, "app.log")
	want := writeRandom(t, src, 11, 1<<20)
	local := filepath.Join(tempDir(t), "copy.log")
	res, err := files.DownloadFile(ctx, cl, src, local, &files.FileOptions{Resume: true})
	require.NoError(t, err)
	require.True(t, res.Legacy, "an empty OK means a qbee-v1 device")
	require.Equal(t, want, fileSum(t, local))
	require.Contains(t, ref.requests[0], `"tether":{"v":1`, "our request carries the extension")

	// Download of a directory.
	makeTree(t, dir)
	out := tempDir(t)
	_, err = files.DownloadFile(ctx, cl, filepath.Join(dir, "tree"), filepath.Join(out, "t"), nil)
	require.NoError(t, err)
	require.Equal(t, fileSum(t, filepath.Join(dir, "tree", "a.bin")), fileSum(t, filepath.Join(out, "t", "a.bin")))

	// Upload of a file: sent as a one-file archive.
	up := filepath.Join(tempDir(t), "fw.bin")
	want = writeRandom(t, up, 12, 3<<20)
	res, err = files.UploadFile(ctx, cl, up, filepath.Join(dir, "fw.bin"), &files.FileOptions{Resume: true})
	require.NoError(t, err)
	require.True(t, res.Legacy)
	require.Equal(t, want, fileSum(t, filepath.Join(dir, "fw.bin")))
}

// TestLegacyClientIsServed speaks to our device as a qbee-v1 client does,
// by hand: a request without the extension, an empty OK, then tar+gzip.
func TestLegacyClientIsServed(t *testing.T) {
	dir := tempDir(t)
	cl := rig(t, rwServer(dir))
	ctx := testbroker.Ctx(t)
	src := filepath.Join(dir, "data.bin")
	want := writeRandom(t, src, 13, 200_000)

	st, ans, err := cl.OpenStream(ctx, wire.MsgFileTransfer, []byte(fmt.Sprintf(`{"direction":0,"path":%q}`, src)))
	require.NoError(t, err)
	require.Empty(t, ans, "a qbee-v1 client gets an empty OK")
	zr, err := gzip.NewReader(st)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	require.NoError(t, err)
	require.Equal(t, "data.bin", hdr.Name, "the archive holds the base name")
	body, err := io.ReadAll(tr)
	require.NoError(t, err)
	_, err = tr.Next()
	require.ErrorIs(t, err, io.EOF)
	st.Close()
	require.Equal(t, want, sha(body))

	// Upload: the client does not half-close; the device answers once the
	// archive ends.
	st, ans, err = cl.OpenStream(ctx, wire.MsgFileTransfer, []byte(fmt.Sprintf(`{"direction":1,"path":%q}`, filepath.Join(dir, "up.bin"))))
	require.NoError(t, err)
	require.Empty(t, ans)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "up.bin", Size: int64(len(body)), Mode: 0o644}))
	_, err = tw.Write(body)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	_, err = st.Write(buf.Bytes())
	require.NoError(t, err)
	fin, err := wire.ExpectOK(st)
	require.NoError(t, err)
	require.Empty(t, fin)
	st.Close()
	require.Equal(t, want, fileSum(t, filepath.Join(dir, "up.bin")))

	// A failed extraction is an Error, never a bare close.
	st, _, err = cl.OpenStream(ctx, wire.MsgFileTransfer, []byte(fmt.Sprintf(`{"direction":1,"path":%q}`, filepath.Join(dir, "bad"))))
	require.NoError(t, err)
	_, err = st.Write(tarGzOf(t, reg("../../evil", 0o644), "x"))
	require.NoError(t, err)
	_, err = wire.ExpectOK(st)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, ".. component")
	st.Close()
}

func tarGzOf(t testing.TB, entries ...any) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(tarOf(t, entries...))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// TestFullDisk uploads to a small tmpfs (or, where this test may not
// mount one, through an injected ENOSPC): the device answers Error and the
// target keeps its old content.
func TestFullDisk(t *testing.T) {
	dir := tempDir(t)
	srv := &files.Server{}
	mounted := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).Run() == nil
	if mounted {
		t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	} else {
		t.Log("cannot mount a tmpfs here; injecting ENOSPC after 1 MiB")
		files.SetWrapFile(srv, func(w io.Writer) io.Writer { return &fullWriter{w: w, left: 1 << 20} })
	}
	srv.SetConfig(files.Config{Write: []string{dir}})
	cl := rig(t, srv)
	target := filepath.Join(dir, "config.bin")
	require.NoError(t, os.WriteFile(target, []byte("old content"), 0o644))
	big := filepath.Join(tempDir(t), "big.bin")
	writeRandom(t, big, 14, 4<<20)
	for _, resume := range []bool{false, true} {
		_, err := files.UploadFile(testbroker.Ctx(t), cl, big, target, &files.FileOptions{Resume: resume})
		var re *wire.RemoteError
		require.ErrorAs(t, err, &re, "resume %v: got %v", resume, err)
		require.Contains(t, re.Reason, "no space left on device")
		require.Contains(t, re.Reason, "the target is unchanged")
		got, err := os.ReadFile(target)
		require.NoError(t, err)
		require.Equal(t, "old content", string(got))
		requireNoLeftovers(t, dir)
	}
}

type fullWriter struct {
	w    io.Writer
	left int
}

func (f *fullWriter) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n, _ := f.w.Write(p[:f.left])
		f.left = 0
		return n, &os.PathError{Op: "write", Path: "file", Err: syscall.ENOSPC}
	}
	f.left -= len(p)
	return f.w.Write(p)
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
