package files

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/tetherhq/tether/transport"
)

// FileOptions tune DownloadFile and UploadFile.
type FileOptions struct {
	// Resume continues from a partial transfer, and keeps the partial
	// file when a transfer fails. Downloads keep theirs next to the local
	// target (<target>.tether-part, with a sidecar <target>.tether-part.json);
	// uploads on the device, which resumes a file of the same size and
	// SHA-256.
	Resume bool
	// NoGzip sends directories as tar archives without gzip.
	NoGzip bool
	// Gzip compresses a single file's raw body with gzip.
	Gzip bool
	// Legacy sends the qbee-v1 request, without our extension.
	Legacy bool
	// Start is called once the device answered, before the body. Its
	// error aborts the transfer.
	Start func(Info) error
	// Progress is called with the count of body bytes as they move.
	Progress func(n int)
	// Limits bound what a download writes locally (UID and GID of -1
	// keep the files this process's own). Its Umask is cleared from the
	// device's modes, of a single file as of an archive's entries: pass
	// the process's umask to create files as cp and scp do.
	Limits Limits
}

// localSidecar is what a partial download's sidecar holds.
type localSidecar struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	MTimeNS int64  `json:"mtime_ns"`
}

// PartialSuffix ends the name of a partial download next to its target.
const PartialSuffix = ".tether-part"

// DownloadFile downloads remote from the device to local. When local is an
// existing directory the file (or directory) goes inside it under its own
// name. A regular file is written to a partial file next to its target,
// checked, synced and renamed into place; a directory (or anything from a
// qbee-v1 device) is extracted beneath local's directory with the
// safeguards of Extract.
func DownloadFile(ctx context.Context, o transport.Opener, remote, local string, opts *FileOptions) (*Result, error) {
	if opts == nil {
		opts = &FileOptions{}
	}
	if err := CheckPath(remote); err != nil {
		return nil, err
	}
	target := local
	intoDir := false
	if fi, err := os.Stat(local); err == nil && fi.IsDir() {
		target, intoDir = filepath.Join(local, path.Base(remote)), true
	}
	part, side := target+PartialSuffix, target+PartialSuffix+".json"
	dopts := &DownloadOptions{NoGzip: opts.NoGzip, Gzip: opts.Gzip, Legacy: opts.Legacy, Progress: opts.Progress}
	var held *os.File
	if opts.Resume {
		if sc, ok := readLocalSidecar(side); ok && sc.Path == remote {
			if f, err := os.Open(part); err == nil {
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() <= sc.Size {
					held = f
					dopts.Offset, dopts.Size, dopts.MTime, dopts.Held = fi.Size(), sc.Size, time.Unix(0, sc.MTimeNS), f
				} else {
					f.Close()
				}
			}
		}
	}
	if held != nil {
		defer held.Close()
	}

	var (
		out     *os.File
		info    Info
		extract chan error
		pw      *io.PipeWriter
		lazy    = &lazyWriter{}
	)
	dopts.Start = func(i Info) error {
		info = i
		if opts.Start != nil {
			if err := opts.Start(i); err != nil {
				return err
			}
		}
		if !i.Raw {
			root, dest := filepath.Dir(local), filepath.Base(local)
			if intoDir {
				root, dest = local, "."
			}
			r, err := os.OpenRoot(root)
			if err != nil {
				return err
			}
			var pr *io.PipeReader
			pr, pw = io.Pipe()
			extract = make(chan error, 1)
			go func() {
				defer r.Close()
				_, _, err := Extract(r, dest, pr, opts.Limits)
				if err == nil {
					// What follows the archive's end is padding (tar
					// writers round up to a record, 10 KiB for GNU tar).
					_, err = io.Copy(io.Discard, io.LimitReader(pr, 1<<20))
				}
				if err != nil {
					pr.CloseWithError(fmt.Errorf("extract: %w", err))
				} else {
					pr.Close()
				}
				extract <- err
			}()
			lazy.w = pw
			return nil
		}
		flag := os.O_WRONLY | os.O_CREATE
		if i.Offset == 0 {
			flag |= os.O_TRUNC
		}
		f, err := os.OpenFile(part, flag, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", part, err)
		}
		if _, err := f.Seek(i.Offset, io.SeekStart); err != nil {
			f.Close()
			return err
		}
		preallocate(f, i.Offset, i.Size-i.Offset)
		b, _ := json.Marshal(localSidecar{Path: remote, Size: i.Size, MTimeNS: i.MTime.UnixNano()})
		if err := os.WriteFile(side, b, 0o600); err != nil {
			f.Close()
			return err
		}
		out, lazy.w = f, newWritebackWriter(f, i.Offset)

		return nil
	}
	res, err := Download(ctx, o, remote, lazy, dopts)
	if extract != nil {
		pw.CloseWithError(err)
		if xerr := <-extract; err == nil || (xerr != nil && errors.Is(err, io.ErrClosedPipe)) {
			err = xerr
		}
		return res, err
	}
	if out == nil {
		return res, err
	}
	if err == nil {
		err = finishLocal(out, part, target, info, opts.Limits)
	} else {
		out.Close()
	}
	if err != nil && (!opts.Resume || errors.Is(err, ErrChecksum)) || err == nil {
		_ = os.Remove(side)
		if err != nil {
			_ = os.Remove(part)
		}
	}
	return res, err
}

// finishLocal gives the downloaded file the device's mode less lim's
// umask, syncs it and renames it into place.
func finishLocal(f *os.File, part, target string, info Info, lim Limits) error {
	defer f.Close()
	if err := f.Chmod(lim.perm(info.Mode)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", part, err)
	}
	if !info.MTime.IsZero() {
		_ = os.Chtimes(part, info.MTime, info.MTime)
	}
	if err := os.Rename(part, target); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(target)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func readLocalSidecar(name string) (localSidecar, bool) {
	var sc localSidecar
	f, err := os.Open(name)
	if err != nil {
		return sc, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSidecar))
	if err != nil || json.Unmarshal(b, &sc) != nil {
		return sc, false
	}
	return sc, true
}

// lazyWriter writes to w, which Start sets.
type lazyWriter struct{ w io.Writer }

func (l *lazyWriter) Write(p []byte) (int, error) {
	if l.w == nil {
		return 0, errors.New("files: no writer")
	}
	return l.w.Write(p)
}

// UploadFile uploads local to remote on the device: a regular file in raw
// mode (with Resume, its SHA-256 is computed first, so that the device can
// resume a partial upload of the same file), a directory as a tar
// archive.
func UploadFile(ctx context.Context, o transport.Opener, local, remote string, opts *FileOptions) (*Result, error) {
	if opts == nil {
		opts = &FileOptions{}
	}
	fi, err := os.Stat(local)
	if err != nil {
		return nil, err
	}
	uopts := &UploadOptions{NoGzip: opts.NoGzip, Gzip: opts.Gzip, Legacy: opts.Legacy, Start: opts.Start, Progress: opts.Progress}
	if fi.IsDir() {
		root, err := os.OpenRoot(filepath.Dir(local))
		if err != nil {
			return nil, err
		}
		defer root.Close()
		base := filepath.Base(local)
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			tw := tar.NewWriter(pw)
			err := WriteTar(tw, root, base, base, nil)
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		uopts.Tar = true
		res, err := Upload(ctx, o, remote, pr, uopts)
		pr.CloseWithError(errors.New("upload ended"))
		<-done
		return res, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file or a directory", local)
	}
	f, err := os.Open(local)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	uopts.Size, uopts.Name, uopts.Mode, uopts.MTime = fi.Size(), fi.Name(), fi.Mode().Perm(), fi.ModTime()
	if opts.Resume {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return nil, fmt.Errorf("read %s: %w", local, err)
		}
		uopts.SHA256 = sumHex(h.Sum(nil))
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return Upload(ctx, o, remote, f, uopts)
}

// writebackEvery is how many bytes a file receives between two starts of
// its writeback.
const writebackEvery = 32 << 20

// writeChunk bounds one write to the file. A larger write makes the page
// cache take larger folios, and on a virtual machine that reports free
// memory to its host (virtio-balloon free page reporting) those come from
// memory the host took back and must fault in again: in a 1 GiB download,
// copying into the page cache took 3 to 10 times the CPU time with 64 KiB
// writes, and up to 30 times with 1 MiB ones, that it takes with 32 KiB
// writes (Linux 6.18).
const writeChunk = 32 << 10

// copyAligned copies src to dst, a file written from offset off on, as
// io.CopyBuffer does, but each read fills buf (a multiple of writeChunk)
// up to a multiple of writeChunk in the file, so that every write but the
// last ends on such a boundary and a writebackWriter under dst writes
// whole, aligned chunks. The stream's frames would otherwise cut the file
// into pieces that straddle them: on the virtual machine of the comment on
// writeChunk, unaligned 32 KiB writes took nearly twice the CPU time of
// aligned ones.
func copyAligned(dst io.Writer, src io.Reader, off int64, buf []byte) (int64, error) {
	var n int64
	for {
		want, r := len(buf)-int((off+n)%writeChunk), 0
		var err error
		for r < want && err == nil {
			var k int
			k, err = src.Read(buf[r:want])
			r += k
		}
		if r > 0 {
			w, werr := dst.Write(buf[:r])
			n += int64(w)
			if werr == nil && w < r {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// writebackWriter writes to a file at off, at most writeChunk bytes a
// system call, and starts the kernel's writeback of every writebackEvery
// bytes, so that dirty pages do not pile up until the final fsync.
type writebackWriter struct {
	f        *os.File
	off      int64 // file offset of the next byte
	pending  int64 // bytes written since the last start
	syncFrom int64
}

func newWritebackWriter(f *os.File, off int64) *writebackWriter {
	return &writebackWriter{f: f, off: off, syncFrom: off}
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n, err := w.f.Write(p[:min(len(p), writeChunk)])
		written += n
		p = p[n:]
		w.off += int64(n)
		w.pending += int64(n)
		if w.pending >= writebackEvery {
			startWriteback(w.f, w.syncFrom, w.pending)
			w.syncFrom, w.pending = w.off, 0
		}
		if err != nil {
			return written, err
		}
	}
	return written, nil
}
