package files

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherhq/tether/transport/wire"
)

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"direction":0,"path":"/var/log/syslog"}`,
		`{"direction":1,"path":"/data/in","tether":{"v":1,"raw":true,"size":10,"sha256":"` + strings.Repeat("ab", 32) + `","name":"x"}}`,
		`{"direction":0,"path":"/a","tether":{"v":1,"offset":5,"size":9,"mtime_ns":1}}`,
		`{"direction":0,"path":"/a/../b"}`,
		`{"direction":3}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if CheckPath(r.Path) != nil {
			t.Fatalf("accepted a non-canonical path %q", r.Path)
		}
		if x := r.Tether; x != nil && (x.Offset < 0 || x.Size < 0 || x.Offset > x.Size && x.Offset > 0) {
			t.Fatalf("accepted offset %d and size %d", x.Offset, x.Size)
		}
	})
}

func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{``, `{"v":1,"raw":true,"offset":0,"size":3,"mtime_ns":5,"mode":420}`, `{"v":1,"gzip":true}`, `{"v":0}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, legacy, err := ParseAnswer(b)
		if err == nil && !legacy && (a.Offset < 0 || a.Size < 0) {
			t.Fatalf("accepted %s", b)
		}
	})
}

// FuzzFrameReader feeds arbitrary bytes as a raw body: the reader never
// yields more data than the frames hold, and ends with a trailer, an
// error frame, or an error.
func FuzzFrameReader(f *testing.F) {
	var ok bytes.Buffer
	fw := newFrameWriter(&ok)
	_, _ = fw.ReadFrom(strings.NewReader("hello"))
	_ = fw.end(FrameTrailer, []byte(`{"size":5,"sha256":"`+strings.Repeat("0", 64)+`"}`))
	f.Add(ok.Bytes())
	f.Add([]byte{0x02, 0x00, 0x03, 'b', 'a', 'd'})
	f.Add([]byte{0x00, 0xff, 0xff})
	f.Add([]byte{0x07, 0x00, 0x00})
	var long bytes.Buffer
	_ = newFrameWriter(&long).end(FrameTrailer, []byte(`{"size":-1,"sha256":"`+strings.Repeat("x", 60000)+`"}`))
	f.Add(long.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := &frameReader{r: bytes.NewReader(b)}
		n, err := io.Copy(io.Discard, fr)
		if n > int64(len(b)) {
			t.Fatalf("read %d data bytes from %d bytes", n, len(b))
		}
		if err == nil && !isSHA256(fr.trailer.SHA256) {
			t.Fatalf("a clean end without a valid trailer")
		}
		// The reader's own errors stay short: they name fields, not the
		// peer's frames. (An error frame's reason is the peer's text.)
		var rfe *RemoteFrameError
		if err != nil && !errors.As(err, &rfe) && len(err.Error()) > 512 {
			t.Fatalf("an error of %d bytes: %.80s...", len(err.Error()), err)
		}
	})
}

// FuzzFrameSink feeds arbitrary bytes as a raw body to frameSink, in
// pieces of arbitrary sizes (a stream's buffers): it yields the data
// that frameReader yields from the same bytes, and ends the same way.
func FuzzFrameSink(f *testing.F) {
	var ok []byte
	for _, d := range []string{"hello", "", "frames", "of all sizes"} {
		ok, _ = wire.AppendMessage(ok, wire.MsgType(FrameData), []byte(d))
	}
	ok, _ = wire.AppendMessage(ok, wire.MsgType(FrameTrailer), []byte(`{"size":23,"sha256":"`+strings.Repeat("0", 64)+`"}`))
	f.Add(ok, uint16(1))
	f.Add(ok, uint16(7))
	f.Add(ok, uint16(65535))
	f.Add([]byte{0x00, 0x00, 0x02, 'h', 'i', 0x02, 0x00, 0x03, 'b', 'a', 'd'}, uint16(2))
	f.Add([]byte{0x00, 0xff, 0xff}, uint16(1))
	f.Add([]byte{0x07, 0x00, 0x00}, uint16(3))
	f.Add([]byte{0x01, 0x00, 0x00, 0x00}, uint16(4))
	f.Fuzz(func(t *testing.T, b []byte, piece uint16) {
		var want bytes.Buffer
		fr := &frameReader{r: bytes.NewReader(b)}
		_, rerr := io.Copy(&want, fr)

		var got bytes.Buffer
		s := &frameSink{data: func(p []byte) error {
			got.Write(p)
			return nil
		}}
		var werr error
		for rest := b; len(rest) > 0 && werr == nil; {
			k := min(len(rest), max(int(piece), 1))
			_, werr = s.Write(rest[:k])
			rest = rest[k:]
		}
		serr := s.end(nil)
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("the sink yielded %d data bytes, the reader %d", got.Len(), want.Len())
		}
		if (serr == nil) != (rerr == nil) || serr != nil && serr.Error() != rerr.Error() {
			t.Fatalf("the sink ended with %v, the reader with %v", serr, rerr)
		}
		if serr == nil && s.trailer != fr.trailer {
			t.Fatalf("trailer %+v; want %+v", s.trailer, fr.trailer)
		}
	})
}

// FuzzExtract extracts arbitrary archives into a fresh root: nothing
// appears outside it, whatever the archive says.
func FuzzExtract(f *testing.F) {
	add := func(hdrs ...*tar.Header) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			if err := tw.WriteHeader(h); err != nil {
				panic(err)
			}
			if h.Size > 0 {
				_, _ = tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		_ = tw.Close()
		f.Add(buf.Bytes())
	}
	add(&tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}, &tar.Header{Typeflag: tar.TypeReg, Name: "top/a", Size: 3, Mode: 0o644})
	add(&tar.Header{Typeflag: tar.TypeDir, Name: "top/", Mode: 0o755}, &tar.Header{Typeflag: tar.TypeSymlink, Name: "top/l", Linkname: "../.."},
		&tar.Header{Typeflag: tar.TypeReg, Name: "top/l/x", Size: 1})
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "../x", Size: 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "root")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		_, _, _ = Extract(root, "dest", bytes.NewReader(b), Limits{MaxBytes: 1 << 20, MaxEntries: 100, UID: -1, GID: -1})
		ents, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 {
			t.Fatalf("extraction wrote next to its root: %v", ents)
		}
	})
}
