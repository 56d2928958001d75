package files_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// rig connects a device serving file transfers with srv to a test broker,
// and returns a client bound to it.
func rig(t testing.TB, srv *files.Server) *client.Client {
	t.Helper()
	if srv.Logger == nil {
		if tt, ok := t.(*testing.T); ok {
			srv.Logger = testbroker.Logger(tt)
		}
	}
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{wire.MsgFileTransfer: srv.Serve})
	return b.DialClient(t, nil)
}

// rwServer allows reading and writing beneath dir.
func rwServer(dir string) *files.Server {
	s := &files.Server{}
	s.SetConfig(files.Config{Read: []string{dir}, Write: []string{dir}})
	return s
}

// tempDir is t.TempDir with symbolic links resolved, so that a root that
// refuses links in its own path accepts it.
func tempDir(t testing.TB) string {
	d, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	return d
}

// prng is a seeded stream of pseudo-random bytes.
type prng struct{ r *rand.ChaCha8 }

func newPRNG(seed uint64) *prng {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return &prng{r: rand.NewChaCha8(s)}
}

func (p *prng) Read(b []byte) (int, error) { return p.r.Read(b) }

// writeRandom writes n pseudo-random bytes to path and returns their SHA-256.
func writeRandom(t testing.TB, path string, seed uint64, n int64) string {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), newPRNG(seed), n)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return hex.EncodeToString(h.Sum(nil))
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func TestRawRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"empty", 0},
		{"one byte", 1},
		{"a frame and a bit", 65536},
		{"several megabytes", 5<<20 + 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			cl := rig(t, rwServer(dir))
			src := filepath.Join(dir, "src.bin")
			want := writeRandom(t, src, 1, tc.size)
			require.NoError(t, os.Chmod(src, 0o640))

			var buf bytes.Buffer
			res, err := cl.Download(testbroker.Ctx(t), src, &buf, nil)
			require.NoError(t, err)
			require.True(t, res.Raw, "a regular file moves in raw mode")
			require.False(t, res.Legacy)
			require.Equal(t, tc.size, res.Size)
			require.Equal(t, fs.FileMode(0o640), res.Mode)
			require.Equal(t, want, res.SHA256)
			sum := sha256.Sum256(buf.Bytes())
			require.Equal(t, want, hex.EncodeToString(sum[:]))

			dst := filepath.Join(dir, "dst.bin")
			mt := time.Unix(1_700_000_000, 0)
			res, err = cl.Upload(testbroker.Ctx(t), dst, bytes.NewReader(buf.Bytes()),
				&files.UploadOptions{Size: int64(buf.Len()), Name: "x", Mode: 0o600, MTime: mt})
			require.NoError(t, err)
			require.Equal(t, want, res.SHA256)
			require.Equal(t, want, fileSum(t, dst))
			fi, err := os.Stat(dst)
			require.NoError(t, err)
			require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
			require.True(t, fi.ModTime().Equal(mt), "mtime %v; want %v", fi.ModTime(), mt)
			requireNoLeftovers(t, dir)
		})
	}
}

// requireNoLeftovers fails when dir holds temporary or partial files.
func requireNoLeftovers(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		require.NotContains(t, e.Name(), ".tether-", "left behind in %s", dir)
	}
}

func TestUploadIntoDirectoryUsesTheName(t *testing.T) {
	dir := tempDir(t)
	cl := rig(t, rwServer(dir))
	_, err := cl.Upload(testbroker.Ctx(t), dir, bytes.NewReader([]byte("hello")), &files.UploadOptions{Size: 5, Name: "greeting.txt"})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "greeting.txt"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
}

// makeTree builds a directory tree with files, an empty directory, and
// symbolic links inside and outside it.
func makeTree(t testing.TB, dir string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "tree", "sub", "deeper"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "tree", "empty"), 0o755))
	writeRandom(t, filepath.Join(dir, "tree", "a.bin"), 2, 300_000)
	writeRandom(t, filepath.Join(dir, "tree", "sub", "b.bin"), 3, 10)
	writeRandom(t, filepath.Join(dir, "tree", "sub", "deeper", "c.bin"), 4, 0)
	require.NoError(t, os.Symlink("sub/b.bin", filepath.Join(dir, "tree", "inside")))
	require.NoError(t, os.Symlink("../../outside.txt", filepath.Join(dir, "tree", "sub", "escape")))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "tree", "absolute")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "outside.txt"), []byte("secret"), 0o644))
}

// treeOf lists a tree: every path with a file's SHA-256, a link's target,
// or "dir".
func treeOf(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			require.NoError(t, err)
			out[rel] = "-> " + l
		case d.IsDir():
			out[rel] = "dir"
		default:
			out[rel] = fileSum(t, p)
		}
		return nil
	}))
	return out
}

func TestTarRoundTrip(t *testing.T) {
	for _, noGzip := range []bool{false, true} {
		t.Run(map[bool]string{false: "gzip", true: "no gzip"}[noGzip], func(t *testing.T) {
			dir := tempDir(t)
			makeTree(t, dir)
			cl := rig(t, rwServer(dir))

			// Download: a tar archive with the base name on top, without
			// the links that leave the tree.
			var buf bytes.Buffer
			res, err := cl.Download(testbroker.Ctx(t), filepath.Join(dir, "tree"), &buf, &files.DownloadOptions{NoGzip: noGzip})
			require.NoError(t, err)
			require.False(t, res.Raw)
			local := tempDir(t)
			root, err := os.OpenRoot(local)
			require.NoError(t, err)
			defer root.Close()
			_, _, err = files.Extract(root, "copy", bytes.NewReader(buf.Bytes()), files.Limits{UID: -1, GID: -1})
			require.NoError(t, err)
			want := treeOf(t, filepath.Join(dir, "tree"))
			delete(want, filepath.Join("sub", "escape"))
			delete(want, "absolute")
			require.Equal(t, want, treeOf(t, filepath.Join(local, "copy")))

			// Upload it back under a new name: the top-level name is stripped.
			_, err = cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "back"), bytes.NewReader(buf.Bytes()), &files.UploadOptions{Tar: true, NoGzip: noGzip})
			require.NoError(t, err)
			require.Equal(t, want, treeOf(t, filepath.Join(dir, "back")))
			// And into an existing directory: the top-level name is kept.
			require.NoError(t, os.Mkdir(filepath.Join(dir, "into"), 0o755))
			_, err = cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "into"), bytes.NewReader(buf.Bytes()), &files.UploadOptions{Tar: true, NoGzip: noGzip})
			require.NoError(t, err)
			require.Equal(t, want, treeOf(t, filepath.Join(dir, "into", "tree")))
		})
	}
}

func TestRefusals(t *testing.T) {
	dir := tempDir(t)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "pub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("s"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pub", "ok"), []byte("ok"), 0o644))
	require.NoError(t, os.Symlink("../secret", filepath.Join(dir, "pub", "link")))
	require.NoError(t, os.Symlink("/etc", filepath.Join(dir, "pub", "etc")))
	srv := &files.Server{}
	srv.SetConfig(files.Config{Read: []string{filepath.Join(dir, "pub")}, Write: []string{filepath.Join(dir, "pub")}})
	cl := rig(t, srv)
	ctx := testbroker.Ctx(t)

	for _, tc := range []struct {
		name, path string
		up         bool
		want       string
	}{
		{"outside the roots", filepath.Join(dir, "secret"), false, "not allowed"},
		{"upload outside the roots", filepath.Join(dir, "new"), true, "not allowed"},
		{"relative", "pub/ok", false, "relative"},
		{"dot dot", filepath.Join(dir, "pub") + "/../secret", false, "canonical"},
		{"link out of the root", filepath.Join(dir, "pub", "link"), false, "symbolic link"},
		{"through a link to /etc", filepath.Join(dir, "pub", "etc", "passwd"), false, "symbolic link"},
		{"upload through a link to /etc", filepath.Join(dir, "pub", "etc", "evil"), true, "symbolic link"},
		{"upload onto a link to /etc", filepath.Join(dir, "pub", "etc"), true, "symbolic link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.up {
				_, err = cl.Upload(ctx, tc.path, bytes.NewReader([]byte("x")), &files.UploadOptions{Size: 1, Name: "x"})
			} else {
				_, err = cl.Download(ctx, tc.path, io.Discard, nil)
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := os.Stat("/etc/evil")
	require.True(t, errors.Is(err, fs.ErrNotExist))
	got, err := os.ReadFile(filepath.Join(dir, "secret"))
	require.NoError(t, err)
	require.Equal(t, "s", string(got))
}

func TestZeroServerRefusesEverything(t *testing.T) {
	dir := tempDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644))
	cl := rig(t, &files.Server{})
	_, err := cl.Download(testbroker.Ctx(t), filepath.Join(dir, "f"), io.Discard, nil)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "not allowed")
}

// tarOf builds a tar archive from headers and contents.
func tarOf(t testing.TB, entries ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(entries); i += 2 {
		h := entries[i].(*tar.Header)
		body, _ := entries[i+1].(string)
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(body))
		}
		require.NoError(t, tw.WriteHeader(h))
		if body != "" {
			_, err := tw.Write([]byte(body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func reg(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}
}

// TestExtractSyncsBeforeItReports: an extraction reports success only
// once what it wrote is synced to disk, every file in place by then; a
// sync that fails fails the extraction.
func TestExtractSyncsBeforeItReports(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	archive := tarOf(t, &tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}, nil,
		reg("top/a", 0o644), "alpha", reg("top/sub/b", 0o600), "beta")
	var synced []string
	files.SetSyncFS(t, func(d *os.File) error {
		a, _ := os.ReadFile(filepath.Join(dir, "out", "a"))
		b, _ := os.ReadFile(filepath.Join(dir, "out", "sub", "b"))
		synced = append(synced, filepath.Clean(d.Name())+": "+string(a)+" "+string(b))
		return nil
	})
	_, _, err = files.Extract(root, "out", bytes.NewReader(archive), files.Limits{UID: -1, GID: -1})
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "out") + ": alpha beta"}, synced, "one sync of the extraction's root, after its last file")

	files.SetSyncFS(t, func(*os.File) error { return errors.New("I/O error") })
	_, _, err = files.Extract(root, "again", bytes.NewReader(archive), files.Limits{UID: -1, GID: -1})
	require.ErrorContains(t, err, "sync the extracted files to disk: I/O error")
}

// paxHeader returns a PAX extended header (typeflag 'x') whose records
// hold a comment of n bytes, as raw tar blocks: archive/tar's writer makes
// these only for an entry of its own.
func paxHeader(t testing.TB, n int) []byte {
	t.Helper()
	rec := func(body string) string {
		for l := len(body) + 3; ; l++ {
			if r := strconv.Itoa(l) + " " + body + "\n"; len(r) == l {
				return r
			}
		}
	}
	records := rec("comment=" + strings.Repeat("a", n))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/x", Size: int64(len(records)), Format: tar.FormatUSTAR}))
	_, err := tw.Write([]byte(records))
	require.NoError(t, err)
	require.NoError(t, tw.Flush())
	b := buf.Bytes()
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// TestExtractRefusesARunOfMetaHeaders: archive/tar reads every PAX header
// before an entry in one Next; a run of them past the header budget is
// refused, while an entry with a PAX header of its own goes through.
func TestExtractRefusesARunOfMetaHeaders(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	require.NoError(t, err)
	defer root.Close()
	file := tarOf(t, reg("f", 0o644), "data")
	lim := files.Limits{UID: -1, GID: -1}

	one := append(paxHeader(t, 1<<20-64), file...)
	_, _, err = files.Extract(root, "one", bytes.NewReader(one), lim)
	require.NoError(t, err, "an entry with one large PAX header")
	got, err := root.ReadFile("one")
	require.NoError(t, err)
	require.Equal(t, "data", string(got))

	var run []byte
	for range 8 {
		run = append(run, paxHeader(t, 1<<20-64)...)
	}
	_, _, err = files.Extract(root, "run", bytes.NewReader(append(run, file...)), lim)
	require.ErrorIs(t, err, files.ErrLimit)
	require.ErrorContains(t, err, "headers run past 4 MiB")
}

func TestHostileArchives(t *testing.T) {
	dirHdr := &tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}
	for _, tc := range []struct {
		name    string
		archive func(t testing.TB, base string) []byte
		want    string
	}{
		{"dot dot", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, reg("top/../../evil", 0o644), "x")
		}, ".. component"},
		{"absolute name", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, reg("/tmp/evil", 0o644), "x")
		}, "absolute"},
		{"device file", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, &tar.Header{Typeflag: tar.TypeChar, Name: "top/null", Devmajor: 1, Devminor: 3}, nil)
		}, "device files"},
		{"fifo", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, &tar.Header{Typeflag: tar.TypeFifo, Name: "top/p"}, nil)
		}, "FIFOs"},
		{"hard link", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, &tar.Header{Typeflag: tar.TypeLink, Name: "top/h", Linkname: "/etc/passwd"}, nil)
		}, "hard link"},
		{"symlink out then write through it", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, &tar.Header{Typeflag: tar.TypeSymlink, Name: "top/l", Linkname: "../../.."}, nil,
				reg("top/l/evil", 0o644), "x")
		}, "leads outside"},
		{"absolute symlink", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, &tar.Header{Typeflag: tar.TypeSymlink, Name: "top/l", Linkname: "/etc"}, nil)
		}, "leads outside"},
		{"entry outside the top directory", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, reg("other/x", 0o644), "x")
		}, "not under"},
		{"long name", func(t testing.TB, _ string) []byte {
			return tarOf(t, dirHdr, nil, reg("top/"+string(bytes.Repeat([]byte("a/"), 2100))+"x", 0o644), "x")
		}, "longer than"},
		{"ten gigabyte sparse entry", func(t testing.TB, _ string) []byte {
			return sparseBomb(t)
		}, "limit exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := tempDir(t)
			dir := filepath.Join(parent, "root")
			require.NoError(t, os.Mkdir(dir, 0o755))
			cl := rig(t, rwServer(dir))
			_, err := cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "dest"), bytes.NewReader(tc.archive(t, dir)), &files.UploadOptions{Tar: true, Legacy: true})
			var re *wire.RemoteError
			require.ErrorAs(t, err, &re, "got %v", err)
			require.Contains(t, re.Reason, tc.want)
			// Nothing outside the root.
			ents, err := os.ReadDir(parent)
			require.NoError(t, err)
			require.Len(t, ents, 1, "something was written next to the root")
			_, err = os.Lstat("/tmp/evil")
			require.True(t, errors.Is(err, fs.ErrNotExist))
		})
	}
}

// sparseBomb is a PAX (format 1.0) sparse entry of 10 GB holding one
// byte, as GNU tar writes them.
func sparseBomb(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}))
	require.NoError(t, tw.Flush())
	// archive/tar writes no GNU.sparse records, so the extended header
	// goes in by hand: a file header whose type is then patched to 'x'.
	var recs string
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", "top/bomb"}, {"GNU.sparse.realsize", "10000000000"}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 2
		if len(itoa(n)+rec) != n {
			n++
		}
		recs += itoa(n) + rec
	}
	at := buf.Len()
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/bomb", Mode: 0o644, Size: int64(len(recs))}))
	_, err := tw.Write([]byte(recs))
	require.NoError(t, err)
	require.NoError(t, tw.Flush())
	raw := buf.Bytes()
	raw[at+156] = tar.TypeXHeader
	copy(raw[at+148:at+156], "        ")
	sum := 0
	for _, c := range raw[at : at+512] {
		sum += int(c)
	}
	copy(raw[at+148:at+156], fmt.Sprintf("%06o\x00 ", sum))
	// The entry: its body starts with the sparse map (one region of one
	// byte at offset 9,999,999,999), padded to a block, then the byte.
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "top/GNUSparseFile.0/bomb", Mode: 0o644, Size: 1024}))
	block := make([]byte, 1024)
	copy(block, "1\n9999999999\n1\n")
	block[512] = 'x'
	_, err = tw.Write(block)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	// Check that the archive reads as a 10 GB file.
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	_, err = tr.Next()
	require.NoError(t, err)
	h, err := tr.Next()
	require.NoError(t, err)
	require.Equal(t, "top/bomb", h.Name)
	require.Equal(t, int64(10_000_000_000), h.Size)
	return buf.Bytes()
}

// TestTarBomb sends a million empty entries; the device stops at its
// entry bound.
func TestTarBomb(t *testing.T) {
	dir := tempDir(t)
	srv := &files.Server{}
	srv.SetConfig(files.Config{Write: []string{dir}, MaxEntries: 1000})
	cl := rig(t, srv)
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755})
		for i := 0; i < 1_000_000 && err == nil; i++ {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "top/f" + itoa(i), Mode: 0o644})
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	_, err := cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "bomb"), pr, &files.UploadOptions{Tar: true})
	pr.CloseWithError(errors.New("done"))
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re, "got %v", err)
	require.Contains(t, re.Reason, "more than 1000 entries")
	ents, err := os.ReadDir(filepath.Join(dir, "bomb"))
	require.NoError(t, err)
	require.LessOrEqual(t, len(ents), 1000)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestSetuidBitsAreStripped(t *testing.T) {
	dir := tempDir(t)
	srv := &files.Server{}
	srv.SetConfig(files.Config{Write: []string{dir}, Umask: 0o022})
	cl := rig(t, srv)
	archive := tarOf(t, &tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}, nil,
		reg("top/suid", 0o4777), "x", reg("top/sgid", 0o2775), "y")
	_, err := cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "out"), bytes.NewReader(archive), &files.UploadOptions{Tar: true, Legacy: true})
	require.NoError(t, err)
	for name, want := range map[string]fs.FileMode{"suid": 0o755, "sgid": 0o755} {
		fi, err := os.Stat(filepath.Join(dir, "out", name))
		require.NoError(t, err)
		require.Equal(t, want, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), name)
	}
}

// TestAllowedFile: a glob that names one file admits that file, and
// nothing next to it or "beneath" it.
func TestAllowedFile(t *testing.T) {
	dir := tempDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hostname"), []byte("gw-17"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "shadow"), []byte("secret"), 0o600))
	srv := &files.Server{}
	srv.SetConfig(files.Config{Read: []string{filepath.Join(dir, "hostname")}})
	cl := rig(t, srv)
	ctx := testbroker.Ctx(t)
	var buf bytes.Buffer
	_, err := cl.Download(ctx, filepath.Join(dir, "hostname"), &buf, nil)
	require.NoError(t, err)
	require.Equal(t, "gw-17", buf.String())
	for _, p := range []string{filepath.Join(dir, "shadow"), filepath.Join(dir, "hostname", "x")} {
		_, err = cl.Download(ctx, p, io.Discard, nil)
		var re *wire.RemoteError
		require.ErrorAs(t, err, &re, p)
	}
}

// TestAllowedNewDirectory: a glob that names a directory that does not
// exist yet admits an archive that creates it, and the archive's symbolic
// links cannot lead the entries after them out of it into its parent.
func TestAllowedNewDirectory(t *testing.T) {
	dirHdr := &tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}
	link := func(name, to string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: to}
	}
	for _, tc := range []struct {
		name    string
		archive []byte
	}{
		// On disk the top-level directory is named drop, so "../private"
		// is its sibling, not the archive's own "private".
		{"a link through the top-level name", tarOf(t, &tar.Header{Typeflag: tar.TypeDir, Name: "private/", Mode: 0o755}, nil,
			link("private/l", "../private"), nil, reg("private/l/evil", 0o644), "x")},
		// Each link stays in the archive by its name, but the second sits
		// in the directory the first leads to.
		{"a link inside a link", tarOf(t, dirHdr, nil, &tar.Header{Typeflag: tar.TypeDir, Name: "top/b/", Mode: 0o755}, nil,
			link("top/b/c", ".."), nil, link("top/b/c/l", ".."), nil, reg("top/b/c/l/evil", 0o644), "x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			require.NoError(t, os.Mkdir(filepath.Join(dir, "private"), 0o755))
			srv := &files.Server{}
			srv.SetConfig(files.Config{Write: []string{filepath.Join(dir, "drop")}})
			cl := rig(t, srv)
			_, err := cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "drop"), bytes.NewReader(tc.archive), &files.UploadOptions{Tar: true})
			require.Error(t, err)
			for _, p := range []string{filepath.Join(dir, "private", "evil"), filepath.Join(dir, "evil")} {
				_, err := os.Lstat(p)
				require.True(t, errors.Is(err, fs.ErrNotExist), "%s was written outside the allowed path", p)
			}
		})
	}
}

// TestAllowedNewDirectoryCreatedMeanwhile: an upload to an allowed path
// that did not exist when it was checked, and that another upload created
// as a directory since, is extracted into it, and no further.
func TestAllowedNewDirectoryCreatedMeanwhile(t *testing.T) {
	dir := tempDir(t)
	drop := filepath.Join(dir, "drop")
	srv := &files.Server{}
	srv.SetConfig(files.Config{Write: []string{drop}})
	cl := rig(t, srv)
	ctx := testbroker.Ctx(t)

	pr, pw := io.Pipe()
	answered := make(chan struct{})
	second := make(chan error, 1)
	go func() {
		_, err := cl.Upload(ctx, drop, pr, &files.UploadOptions{Tar: true,
			Start: func(files.Info) error { close(answered); return nil }})
		second <- err
	}()
	<-answered // the device checked drop, which did not exist
	_, err := cl.Upload(ctx, drop, bytes.NewReader(tarOf(t, &tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}, nil)),
		&files.UploadOptions{Tar: true})
	require.NoError(t, err)
	link := func(name, to string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: to}
	}
	archive := tarOf(t, &tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}, nil,
		&tar.Header{Typeflag: tar.TypeDir, Name: "top/b/", Mode: 0o755}, nil,
		link("top/b/c", ".."), nil, link("top/b/c/l", "../.."), nil, reg("top/b/c/l/evil", 0o644), "x")
	_, err = pw.Write(archive)
	pw.CloseWithError(err)
	require.Error(t, <-second)
	_, err = os.Lstat(filepath.Join(dir, "evil"))
	require.True(t, errors.Is(err, fs.ErrNotExist), "evil was written outside the allowed path")
}

// TestOldPartialsAreSwept: partial uploads older than PartialMaxAge go when
// the next upload to their directory starts; younger ones stay.
func TestOldPartialsAreSwept(t *testing.T) {
	dir := tempDir(t)
	srv := &files.Server{}
	srv.SetConfig(files.Config{Write: []string{dir}})
	cl := rig(t, srv)
	old := filepath.Join(dir, ".fw.img.tether-part")
	young := filepath.Join(dir, ".other.bin.tether-part")
	mine := filepath.Join(dir, ".tether-notes") // not ours: no ".<name>.tether-" form
	for _, p := range []string{old, old + ".json", young, mine} {
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
	}
	twoDays := time.Now().Add(-48 * time.Hour)
	for _, p := range []string{old, old + ".json", mine} {
		require.NoError(t, os.Chtimes(p, twoDays, twoDays))
	}
	_, err := cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "new.txt"), bytes.NewReader([]byte("hi")), &files.UploadOptions{Size: 2, Name: "new.txt"})
	require.NoError(t, err)
	for p, want := range map[string]bool{old: false, old + ".json": false, young: true, mine: true} {
		_, err := os.Stat(p)
		require.Equal(t, want, err == nil, "%s kept: %v", p, err == nil)
	}
}

// TestSweepKeepsAPartialInUse: a partial upload whose sidecar was written
// more than PartialMaxAge ago, but whose bytes came in since, is one a
// retry still resumes: the sweep takes the two together, by the younger.
func TestSweepKeepsAPartialInUse(t *testing.T) {
	dir := tempDir(t)
	srv := &files.Server{}
	srv.SetConfig(files.Config{Write: []string{dir}})
	cl := rig(t, srv)
	body := bytes.Repeat([]byte("firmware"), 1<<16)
	sum := sha256.Sum256(body)
	part := filepath.Join(dir, ".fw.img.tether-part")
	side, err := json.Marshal(map[string]any{"size": len(body), "sha256": hex.EncodeToString(sum[:])})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(part+".json", side, 0o600))
	require.NoError(t, os.WriteFile(part, body[:len(body)/2], 0o600))
	twoDays := time.Now().Add(-48 * time.Hour)
	require.NoError(t, os.Chtimes(part+".json", twoDays, twoDays)) // the first attempt, two days ago

	res, err := cl.Upload(testbroker.Ctx(t), filepath.Join(dir, "fw.img"), bytes.NewReader(body),
		&files.UploadOptions{Size: int64(len(body)), Name: "fw.img", SHA256: hex.EncodeToString(sum[:])})
	require.NoError(t, err)
	require.Equal(t, int64(len(body)/2), res.Offset, "the upload resumes")
	require.Equal(t, hex.EncodeToString(sum[:]), fileSum(t, filepath.Join(dir, "fw.img")))
	requireNoLeftovers(t, dir)
}

// TestRawGzip moves a compressible file in raw mode with gzip, both ways,
// and resumes a compressed download from an offset.
func TestRawGzip(t *testing.T) {
	dir := tempDir(t)
	cl := rig(t, rwServer(dir))
	ctx := testbroker.Ctx(t)
	body := bytes.Repeat([]byte("2026-12-02 gw-17 sensor=ok temperature=21.5\n"), 100_000)
	src := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(src, body, 0o644))
	want := sha(body)

	var buf bytes.Buffer
	res, err := cl.Download(ctx, src, &buf, &files.DownloadOptions{Gzip: true})
	require.NoError(t, err)
	require.True(t, res.Raw && res.Gzip, "raw mode with gzip")
	require.Equal(t, want, res.SHA256)
	require.Equal(t, body, buf.Bytes())

	// Resume from the middle: the device compresses from the offset.
	fi, err := os.Stat(src)
	require.NoError(t, err)
	half := int64(len(body) / 2)
	buf.Reset()
	res, err = cl.Download(ctx, src, &buf, &files.DownloadOptions{Gzip: true, Offset: half, Size: fi.Size(), MTime: fi.ModTime(),
		Held: bytes.NewReader(body[:half])})
	require.NoError(t, err)
	require.Equal(t, half, res.Offset)
	require.Equal(t, body[half:], buf.Bytes())
	require.Equal(t, want, res.SHA256)

	dst := filepath.Join(dir, "up.log")
	res, err = cl.Upload(ctx, dst, bytes.NewReader(body), &files.UploadOptions{Size: int64(len(body)), Name: "up.log", Gzip: true})
	require.NoError(t, err)
	require.True(t, res.Gzip)
	require.Equal(t, want, fileSum(t, dst))

	// An empty file still carries a (tiny) gzip stream.
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	buf.Reset()
	res, err = cl.Download(ctx, empty, &buf, &files.DownloadOptions{Gzip: true})
	require.NoError(t, err)
	require.Zero(t, buf.Len())
	_, err = cl.Upload(ctx, filepath.Join(dir, "empty2"), bytes.NewReader(nil), &files.UploadOptions{Size: 0, Name: "e", Gzip: true})
	require.NoError(t, err)
}

// endsLog records where each write to an uploaded file ends.
type endsLog struct {
	w    io.Writer
	mu   sync.Mutex
	off  int64
	ends []int64
}

func (e *endsLog) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	e.mu.Lock()
	e.off += int64(n)
	e.ends = append(e.ends, e.off)
	e.mu.Unlock()
	return n, err
}

// TestUploadWritesAlignedChunks: the device writes an upload in pieces
// that end at multiples of 32 KiB in the file, whatever frames brought
// the bytes (the page cache takes aligned writes at about half the CPU
// time), and the file is whole.
func TestUploadWritesAlignedChunks(t *testing.T) {
	dir := tempDir(t)
	srv := rwServer(dir)
	log := &endsLog{}
	files.SetWrapFile(srv, func(w io.Writer) io.Writer { log.w = w; return log })
	cl := rig(t, srv)
	src := filepath.Join(tempDir(t), "src.bin")
	const size = 3<<20 + 777
	want := writeRandom(t, src, 21, size)
	target := filepath.Join(dir, "dst.bin")
	_, err := files.UploadFile(testbroker.Ctx(t), cl, src, target, nil)
	require.NoError(t, err)
	got, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, want, sha(got))
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Equal(t, int64(size), log.off)
	for i, end := range log.ends[:len(log.ends)-1] {
		require.Zero(t, end%(32<<10), "write %d of %d ends at %d", i, len(log.ends), end)
	}
}
