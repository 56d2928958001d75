package files

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/tetherhq/tether/internal/procs"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Info describes a transfer once the device answered.
type Info struct {
	// Legacy: the device answered without our extension (a qbee-v1
	// device). The body is a gzip-compressed tar archive; there is no
	// resume and no checksum beyond gzip's.
	Legacy bool
	// Raw: the body is one file's bytes; otherwise a tar archive.
	Raw bool
	// Gzip: the body went gzip-compressed.
	Gzip bool
	// Offset is where a raw body starts in the file: the offset asked for,
	// or 0 when the device restarted (the file changed, or nothing was held).
	Offset int64
	// Size, MTime and Mode describe a raw download's file.
	Size  int64
	MTime time.Time
	Mode  fs.FileMode
}

// Result is what a finished transfer moved.
type Result struct {
	Info
	// Bytes is what crossed the stream in this call, not counting what a
	// resume skipped (tar mode: the archive's uncompressed bytes).
	Bytes int64
	// SHA256 is the whole file's checksum in hex (raw mode), as both sides
	// computed it.
	SHA256 string
}

// DownloadOptions tune Download. The zero value (or nil) downloads from
// the start with our extension.
type DownloadOptions struct {
	// Offset, Size and MTime resume a raw download: the client holds the
	// file's first Offset bytes, from a file of Size bytes last modified at
	// MTime (as an earlier Info said). The device resumes only when the
	// file is unchanged, and starts at 0 otherwise.
	Offset int64
	Size   int64
	MTime  time.Time
	// Held reads the Offset bytes the client holds, to compute the whole
	// file's checksum. Required when Offset > 0. It is read before the
	// request goes out, so that a slow disk never keeps the client from
	// taking the body once the device sends it (the device ends a
	// transfer that the client takes nothing of for its idle timeout); when
	// the file changed on the device, which then starts at 0, that read
	// was for nothing.
	Held io.Reader
	// NoGzip asks for a tar archive without gzip (a directory of files that
	// are compressed already).
	NoGzip bool
	// Gzip asks for a raw body compressed with gzip (a compressible file on
	// a slow link). The checksum is still the file's.
	Gzip bool
	// Legacy sends the qbee-v1 request, without our extension.
	Legacy bool
	// Start is called once the device answered, before the body: the
	// place to truncate a partial file when Info.Offset is 0, or to choose
	// what to do with a tar archive. Its error aborts the transfer.
	Start func(Info) error
	// Progress is called with the count of body bytes as they arrive.
	Progress func(n int)
	// IdleTimeout ends a transfer without progress for this long (up to a
	// sixteenth more); 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Download fetches path from the device that o opens streams to, and writes
// the body to w: a regular file's bytes in raw mode, or the (uncompressed)
// tar archive of a directory, or of anything from a qbee-v1 device. In raw
// mode the whole file's SHA-256 is checked against the device's trailer;
// a mismatch is ErrChecksum.
func Download(ctx context.Context, o transport.Opener, path string, w io.Writer, opts *DownloadOptions) (_ *Result, err error) {
	defer func() { err = lostErr(o, err) }()
	defer procs.Hold()() // file I/O waits in system calls, not on a process's only P
	if opts == nil {
		opts = &DownloadOptions{}
	}
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	req := Request{Direction: DirDownload, Path: path}
	if !opts.Legacy {
		x := &Ext{V: Version, NoGzip: opts.NoGzip, Gzip: opts.Gzip}
		if opts.Offset > 0 {
			if opts.Held == nil {
				return nil, errors.New("files: DownloadOptions.Held is required with an Offset")
			}
			x.Offset, x.Size, x.MTimeNS = opts.Offset, opts.Size, opts.MTime.UnixNano()
		}
		req.Tether = x
	}
	var held hash.Hash // the held bytes' hash, for a resumed body
	if req.Tether != nil && opts.Offset > 0 {
		held = sha256.New()
		if _, err := io.CopyN(held, ctxReader{ctx, opts.Held}, opts.Offset); err != nil {
			return nil, fmt.Errorf("read the %d bytes held: %w", opts.Offset, err)
		}
	}
	payload, _ := json.Marshal(req)
	st, ans, err := o.OpenStream(ctx, wire.MsgFileTransfer, payload)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	stop := abortOnEnd(ctx, o, st)
	defer stop()
	a, legacy, err := ParseAnswer(ans)
	if err != nil {
		return nil, err
	}
	res := &Result{Info: Info{Legacy: legacy, Raw: a.Raw, Gzip: legacy || a.Gzip, Offset: a.Offset, Size: a.Size,
		MTime: time.Unix(0, a.MTimeNS), Mode: fs.FileMode(a.Mode).Perm()}}
	if legacy || a.MTimeNS == 0 {
		res.MTime = time.Time{}
	}
	if a.Raw && (a.Offset > a.Size || a.Offset > 0 && (a.Offset != opts.Offset || held == nil)) {
		return nil, fmt.Errorf("%w: the device resumed at %d, the client holds %d bytes", ErrBadRequest, a.Offset, opts.Offset)
	}
	if opts.Start != nil {
		if err := opts.Start(res.Info); err != nil {
			_ = st.Abort()
			return nil, err
		}
	}
	in := &idleRW{st: st, d: idleOr(opts.IdleTimeout)}
	out := progressWriter{w: w, f: opts.Progress}
	if !a.Raw {
		var r io.Reader = in
		if legacy || a.Gzip {
			zr, err := gzip.NewReader(in)
			if err != nil {
				return nil, fmt.Errorf("read archive: %w", streamErr(err))
			}
			r = zr
		}
		n, err := io.CopyBuffer(out, r, make([]byte, 256<<10))
		res.Bytes = n
		if err != nil {
			return res, fmt.Errorf("read archive: %w", streamErr(err))
		}
		return res, nil
	}
	h := sha256.New()
	if a.Offset > 0 {
		h = held // the device resumed where asked (checked above)
	}
	var (
		n  int64
		tr Trailer
	)
	if a.Gzip {
		fr := &frameReader{r: in}
		n, err = copyHashed(out, &maxReader{r: &gunzipFrames{fr: fr}, n: a.Size - a.Offset}, h)
		tr = fr.trailer
	} else {
		n, tr, err = receiveRaw(st, in, out, h, a.Offset, a.Size-a.Offset)
	}
	res.Bytes = n
	if err != nil {
		var rfe *RemoteFrameError
		if errors.As(err, &rfe) {
			return res, &wire.RemoteError{Reason: rfe.Reason}
		}
		return res, streamErr(err)
	}
	res.SHA256 = sumHex(h.Sum(nil))
	switch {
	case a.Offset+n != a.Size || tr.Size != a.Size:
		return res, fmt.Errorf("%w: received %d bytes of a %d-byte file (trailer: %d)", ErrChecksum, a.Offset+n, a.Size, tr.Size)
	case tr.SHA256 != res.SHA256:
		return res, fmt.Errorf("%w: the bytes received have SHA-256 %s, the device sent %s", ErrChecksum, res.SHA256, tr.SHA256)
	}
	return res, nil
}

// receiveRaw reads an uncompressed raw body of at most limit data bytes
// from st, which go to w from file offset off on, and hashes them with h.
// It returns the data bytes written to w and the trailer.
//
// The stream hands over the buffers it received (Stream.WriteTo), and
// their data is gathered into writeChunk bytes that end at multiples of
// writeChunk in the file, each hashed while it is in the cache, then
// written: the page cache handles such writes at about half the CPU time
// of writes at arbitrary offsets (the frames of the body and the stream's
// buffers do not line up with pages). All in this goroutine: on a busy
// machine the CPU time per byte decides the rate, not what runs in
// parallel. Every byte received before a failure is written.
func receiveRaw(st *transport.Stream, in *idleRW, w io.Writer, h hash.Hash, off, limit int64) (int64, Trailer, error) {
	var (
		n, got int64
		werr   error
		buf    = make([]byte, writeChunk)
		chunk  = buf[: 0 : writeChunk-int(off%writeChunk)]
	)
	flush := func() error {
		h.Write(chunk)
		m, err := w.Write(chunk)
		n += int64(m)
		if err == nil && m < len(chunk) {
			err = io.ErrShortWrite
		}
		chunk = buf[:0]
		werr = err
		return err
	}
	s := &frameSink{data: func(b []byte) error {
		if int64(len(b)) > limit-got {
			return fmt.Errorf("%w: more bytes than the device announced", ErrLimit)
		}
		got += int64(len(b))
		in.renewRead()
		for len(b) > 0 {
			k := copy(chunk[len(chunk):cap(chunk)], b)
			chunk, b = chunk[:len(chunk)+k], b[k:]
			if len(chunk) == cap(chunk) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}}
	in.renewRead()
	_, err := st.WriteTo(s)
	err = s.end(err)
	if len(chunk) > 0 && werr == nil {
		if ferr := flush(); err == nil {
			err = ferr
		}
	}
	return n, s.trailer, err
}

// abortOnEnd aborts st when ctx ends or, when o tells (a client or a
// session), its connection is gone: a write blocked on the stream's window
// would otherwise wait for its deadline.
func abortOnEnd(ctx context.Context, o transport.Opener, st *transport.Stream) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	if d, ok := o.(interface{ Done() <-chan struct{} }); ok {
		done := d.Done()
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	stopAbort := context.AfterFunc(ctx, func() { _ = st.Abort() })
	return func() {
		stopAbort()
		cancel()
	}
}

// lostErr reports err as a lost connection when o's connection is gone
// (a closed stream is then all the stream says).
func lostErr(o transport.Opener, err error) error {
	if err == nil || errors.Is(err, transport.ErrConnLost) {
		return err
	}
	if d, ok := o.(interface{ Done() <-chan struct{} }); ok {
		select {
		case <-d.Done():
			return fmt.Errorf("%w (%v)", transport.ErrConnLost, err)
		default:
		}
	}
	return err
}

func idleOr(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultIdleTimeout
	}
	return d
}

// streamErr names a deadline for what it is.
func streamErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("no data from the device for too long: %w", err)
	}
	return err
}

type progressWriter struct {
	w io.Writer
	f func(int)
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if p.f != nil && n > 0 {
		p.f(n)
	}
	return n, err
}

// UploadOptions tune Upload.
type UploadOptions struct {
	// Tar: the reader is an (uncompressed) tar archive, extracted at the
	// path with the qbee-v1 semantics. Otherwise it is one file of Size bytes.
	Tar bool
	// Size is the file's size (raw mode). Required.
	Size int64
	// SHA256 is the whole file's checksum in hex. With it the device keeps
	// a partial file that a retry resumes; the reader must then be an
	// io.Seeker, or its skipped bytes are read and dropped.
	SHA256 string
	// Name is the file's base name, used when the path is an existing
	// directory on the device (and in the archive sent to a qbee-v1 device).
	Name string
	// Mode is the file's permission bits; 0 means 0644.
	Mode fs.FileMode
	// MTime is set on the file; zero leaves the time of the upload.
	MTime time.Time
	// NoGzip sends a tar archive without gzip (our devices only).
	NoGzip bool
	// Gzip compresses a raw body with gzip (our devices only).
	Gzip bool
	// Legacy sends the qbee-v1 request, without our extension.
	Legacy bool
	// Start is called once the device answered, before the body.
	Start func(Info) error
	// Progress is called with the count of body bytes as they are sent.
	Progress func(n int)
	// IdleTimeout ends a transfer without progress for this long (up to a
	// sixteenth more), and bounds the wait for the final answer; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Upload sends r to path on the device that o opens streams to. A file
// moves in raw mode and is stored atomically once its SHA-256 checks out;
// a qbee-v1 device gets a gzip-compressed tar archive instead. Upload
// returns after the device's final answer.
func Upload(ctx context.Context, o transport.Opener, path string, r io.Reader, opts *UploadOptions) (_ *Result, err error) {
	defer func() { err = lostErr(o, err) }()
	defer procs.Hold()() // file I/O waits in system calls, not on a process's only P
	if opts == nil {
		opts = &UploadOptions{}
	}
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	if !opts.Tar && (opts.Size < 0 || opts.Name == "") {
		return nil, errors.New("files: UploadOptions.Size and Name are required for a file")
	}
	req := Request{Direction: DirUpload, Path: path}
	if !opts.Legacy {
		req.Tether = &Ext{V: Version, Raw: !opts.Tar, NoGzip: opts.NoGzip && opts.Tar}
		if !opts.Tar {
			x := req.Tether
			x.Size, x.SHA256, x.Name, x.Mode, x.Gzip = opts.Size, opts.SHA256, opts.Name, uint32(opts.Mode.Perm()), opts.Gzip
			if !opts.MTime.IsZero() {
				x.MTimeNS = opts.MTime.UnixNano()
			}
		}
	}
	payload, _ := json.Marshal(req)
	st, ans, err := o.OpenStream(ctx, wire.MsgFileTransfer, payload)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	stop := abortOnEnd(ctx, o, st)
	defer stop()
	a, legacy, err := ParseAnswer(ans)
	if err != nil {
		return nil, err
	}
	res := &Result{Info: Info{Legacy: legacy, Raw: a.Raw, Gzip: legacy || a.Gzip, Offset: a.Offset, Size: opts.Size}}
	if a.Raw && (opts.Tar || a.Offset > opts.Size || (a.Offset > 0 && opts.SHA256 == "")) {
		_ = st.Abort()
		return nil, fmt.Errorf("%w: the device's answer does not fit the request: %s", ErrBadRequest, ans)
	}
	if opts.Start != nil {
		if err := opts.Start(res.Info); err != nil {
			_ = st.Abort()
			return nil, err
		}
	}
	idle := idleOr(opts.IdleTimeout)
	out := &idleRW{st: st, d: idle}
	// The device may answer before the body is all sent (a full disk, a
	// refused entry): read its final answer meanwhile and stop sending
	// when it comes, so that the caller sees the answer, not a write that
	// failed when the stream went away. The read waits without a deadline
	// while the body goes out, and with the idle bound after.
	type final struct {
		payload []byte
		err     error
	}
	finc := make(chan final, 1)
	_ = st.SetReadDeadline(time.Time{})
	go func() {
		p, err := wire.ExpectOK(st)
		out.stop()
		finc <- final{p, err}
	}()
	var sendErr error
	if a.Raw {
		res.Bytes, res.SHA256, sendErr = sendRaw(out, r, a.Offset, a.Gzip, opts)
	} else {
		res.Bytes, sendErr = sendTar(out, r, legacy || a.Gzip, legacy && !opts.Tar, opts)
	}
	if sendErr != nil && !isStreamErr(sendErr) {
		_ = st.Abort()
		<-finc // the abort ends the read
		return res, sendErr
	}
	// The device's final answer; after a failed write it may still carry
	// the reason (a full disk, a refused entry).
	_ = st.SetReadDeadline(time.Now().Add(idle))
	f := <-finc
	fin, err := f.payload, f.err
	if err != nil {
		var re *wire.RemoteError
		switch {
		case errors.As(err, &re):
			if errors.Is(err, ErrChecksum) || containsChecksum(re.Reason) {
				return res, fmt.Errorf("%w: %s", ErrChecksum, re.Reason)
			}
			return res, err
		case sendErr != nil:
			return res, sendErr
		case errors.Is(err, wire.ErrNoAnswer):
			return res, ErrNoFinalAnswer
		}
		return res, fmt.Errorf("the device's final answer: %w", streamErr(err))
	}
	if sendErr != nil {
		return res, sendErr
	}
	if a.Raw {
		tr, err := parseTrailer(fin)
		if err != nil {
			return res, err
		}
		if tr.SHA256 != res.SHA256 || tr.Size != opts.Size {
			return res, fmt.Errorf("%w: the device stored %d bytes with SHA-256 %s; %d bytes with %s were sent", ErrChecksum, tr.Size, tr.SHA256, opts.Size, res.SHA256)
		}
	}
	return res, nil
}

func containsChecksum(reason string) bool {
	return len(reason) >= len(ErrChecksum.Error()) && reason[:len(ErrChecksum.Error())] == ErrChecksum.Error()
}

// sendRaw sends r from off as data frames, then the trailer.
func sendRaw(w io.Writer, r io.Reader, off int64, gz bool, opts *UploadOptions) (int64, string, error) {
	h := sha256.New()
	fw := newFrameWriter(w)
	if off > 0 {
		// The device holds the first off bytes of the file with opts.SHA256;
		// the trailer carries that checksum, which the device checks
		// against what it holds and what it now receives.
		if s, ok := r.(io.Seeker); ok {
			if _, err := s.Seek(off, io.SeekCurrent); err != nil {
				return 0, "", fmt.Errorf("seek to %d: %w", off, err)
			}
		} else if _, err := io.CopyN(io.Discard, r, off); err != nil {
			return 0, "", fmt.Errorf("skip %d bytes: %w", off, err)
		}
	}
	src := io.Reader(io.LimitReader(r, opts.Size-off))
	if off == 0 {
		src = io.TeeReader(src, h)
	}
	var n int64
	var err error
	if gz {
		zw, _ := gzip.NewWriterLevel(dataWriter{fw}, gzip.BestSpeed)
		if n, err = io.Copy(zw, progressReader{r: src, f: opts.Progress}); err == nil {
			err = zw.Close()
		}
	} else {
		n, err = fw.ReadFrom(progressReader{r: src, f: opts.Progress})
	}
	if err != nil {
		if isStreamErr(err) {
			return n, "", err
		}
		_ = fw.end(FrameError, []byte("the client could not read the file: "+err.Error()))
		return n, "", fmt.Errorf("read the local file: %w", err)
	}
	if off+n != opts.Size {
		_ = fw.end(FrameError, []byte("the client's file shrank while being sent"))
		return n, "", fmt.Errorf("the local file shrank from %d to %d bytes while being sent", opts.Size, off+n)
	}
	sum := opts.SHA256
	if off == 0 {
		sum = sumHex(h.Sum(nil))
		if opts.SHA256 != "" && sum != opts.SHA256 {
			_ = fw.end(FrameError, []byte("the client's file changed while being sent"))
			return n, sum, fmt.Errorf("%w: the local file changed while being sent (SHA-256 %s, announced %s)", ErrChecksum, sum, opts.SHA256)
		}
	}
	tr, _ := json.Marshal(Trailer{Size: opts.Size, SHA256: sum})
	return n, sum, fw.end(FrameTrailer, tr)
}

// sendTar sends r as a tar archive, gzip-compressed when gz. wrap makes a
// one-file archive of r first (a file for a qbee-v1 device).
func sendTar(w io.Writer, r io.Reader, gz, wrap bool, opts *UploadOptions) (int64, error) {
	var zw *gzip.Writer
	if gz {
		zw, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		w = zw
	}
	var n int64
	var err error
	if wrap {
		tw := tar.NewWriter(w)
		mt := opts.MTime
		if mt.IsZero() {
			mt = time.Now()
		}
		mode := opts.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: opts.Name, Size: opts.Size, Mode: int64(mode), ModTime: mt})
		if err == nil {
			n, err = io.CopyN(tw, progressReader{r: r, f: opts.Progress}, opts.Size)
		}
		if err == nil {
			err = tw.Close()
		}
	} else {
		n, err = io.CopyBuffer(w, progressReader{r: r, f: opts.Progress}, make([]byte, 256<<10))
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	return n, err
}

type progressReader struct {
	r io.Reader
	f func(int)
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if p.f != nil && n > 0 {
		p.f(n)
	}
	return n, err
}

// ctxReader is r, failing with ctx's error once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
