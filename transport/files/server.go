package files

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/internal/procs"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Defaults of a Server.
const (
	// DefaultIdleTimeout ends a transfer whose body made no progress for
	// this long.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultPartialMaxAge: partial uploads older than this are removed.
	DefaultPartialMaxAge = 24 * time.Hour
	// maxSidecar bounds a partial upload's sidecar file.
	maxSidecar = 4096
)

// Config is what a Server allows. The zero value allows nothing.
type Config struct {
	// Read and Write are the paths that may be downloaded and uploaded:
	// absolute globs in path.Match syntax ('*' does not cross '/'). A path
	// is allowed when it, or one of its parent directories, matches; that
	// match is the root beneath which every name is opened. Empty allows
	// nothing.
	Read, Write []string
	// MaxSize bounds an uploaded file, and an uploaded archive's file
	// bytes together; 0 means DefaultMaxSize (4 GiB).
	MaxSize int64
	// MaxEntries bounds an uploaded archive's entries; 0 means
	// DefaultMaxEntries.
	MaxEntries int
	// Chown gives uploaded files to UID and GID (the agent must be root).
	Chown    bool
	UID, GID int
	// Umask is cleared from the modes of uploaded files and directories.
	// setuid, setgid and sticky bits are always cleared.
	Umask fs.FileMode
	// FollowSymlinks lets a path go through symbolic links (always within
	// its root). False refuses a path with a symbolic link in it.
	FollowSymlinks bool
	// IdleTimeout ends a transfer without progress for this long; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// PartialMaxAge: partial uploads older than this are removed from a
	// directory when the next upload to it starts; 0 means
	// DefaultPartialMaxAge.
	PartialMaxAge time.Duration
	// RunAs, when set, gives every transfer that user's file-system
	// rights (Linux only; the agent must run as root): it reads and
	// writes what the user may, and the files it creates are the user's.
	// Chown then must name that user, or leave UID at -1 and name one of
	// the user's groups. Nil uses the agent's own rights.
	RunAs *Credential
}

func (c *Config) limits() Limits {
	l := Limits{MaxBytes: c.MaxSize, MaxEntries: c.MaxEntries, UID: -1, GID: -1, Umask: c.Umask}
	if c.Chown {
		l.UID, l.GID = c.UID, c.GID
	}
	return l
}

func (c *Config) idle() time.Duration {
	if c.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

// Server serves file transfer streams on a device. Its Serve method is a
// device.Handler for wire.MsgFileTransfer. The zero value refuses every
// transfer; SetConfig allows some.
type Server struct {
	// Logger receives refusals and transfers; nil discards them.
	Logger *slog.Logger

	cfg atomic.Pointer[Config]

	// wrapFile wraps what an upload writes to (tests inject errors).
	wrapFile func(io.Writer) io.Writer
	// keepAlive replaces the constant of the same name (tests).
	keepAlive time.Duration

	mu sync.Mutex
	// mu guards the following.
	busy map[string]*upload // uploads in progress, by target
}

// upload is an upload in progress.
type upload struct {
	done chan struct{} // closed when it ends
	// file is the size and SHA-256 of the file it writes, or "" (no
	// partial is kept).
	file string
	st   *transport.Stream
	// preempt is closed when a retry of the same file takes its place.
	preempt chan struct{}
	once    sync.Once
}

// lock waits until no other upload writes to target, for at most d. An
// upload of the same file (file, when not "") is a retry whose earlier
// attempt the device may not yet know to be cut (the client's side of the
// connection was lost): the retry takes its place at once, rather than
// make the client wait beyond its patience for the answer. The upload
// ended so keeps its partial, with the hash state of what it received.
func (s *Server) lock(ctx context.Context, target, file string, st *transport.Stream, d time.Duration) (u *upload, unlock func(), err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.busy == nil {
			s.busy = make(map[string]*upload)
		}
		held, ok := s.busy[target]
		if !ok {
			u := &upload{done: make(chan struct{}), file: file, st: st, preempt: make(chan struct{})}
			s.busy[target] = u
			s.mu.Unlock()
			return u, func() {
				s.mu.Lock()
				delete(s.busy, target)
				s.mu.Unlock()
				close(u.done)
			}, nil
		}
		s.mu.Unlock()
		if file != "" && held.file == file {
			held.once.Do(func() {
				close(held.preempt)
				_ = held.st.Abort()
			})
		}
		select {
		case <-held.done:
		case <-timer.C:
			return nil, nil, fmt.Errorf("another upload to %s is in progress; try again when it ends", target)
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// SetConfig replaces the configuration; transfers that start from now on
// use it.
func (s *Server) SetConfig(c Config) {
	c.Read = append([]string(nil), c.Read...)
	c.Write = append([]string(nil), c.Write...)
	s.cfg.Store(&c)
}

func (s *Server) config() *Config {
	if c := s.cfg.Load(); c != nil {
		return c
	}
	return &Config{}
}

// CheckGlobs reports the first glob that is not an absolute, canonical
// pattern in path.Match syntax.
func CheckGlobs(globs []string) error { return wire.CheckFileGlobs(globs) }

// allowedRoot returns the shortest ancestor of p (p included) that one of
// globs matches, and p relative to it.
func allowedRoot(globs []string, p string) (root, rel string, ok bool) {
	root, ok = wire.MatchFilePath(globs, p)
	if !ok {
		return "", "", false
	}
	rel = strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
	if rel == "" {
		rel = "."
	}
	return root, rel, true
}

// Serve serves one file transfer stream. Errors before the answer become
// the Error answer.
func (s *Server) Serve(ctx context.Context, st *transport.Stream, payload []byte) error {
	// File I/O waits in system calls: not on a process's only P.
	defer procs.Hold()()
	req, err := ParseRequest(payload)
	if err != nil {
		return err
	}
	cfg := s.config()
	if cfg.RunAs != nil {
		return asUser(cfg.RunAs, func() error { return s.serve(ctx, st, req, cfg) })
	}
	return s.serve(ctx, st, req, cfg)
}

// serve checks req against cfg and moves the file. Every file it touches
// is touched from this goroutine (see asUser).
func (s *Server) serve(ctx context.Context, st *transport.Stream, req Request, cfg *Config) error {
	log := logx.Or(s.Logger)
	globs, key := cfg.Read, "read"
	if req.Direction == DirUpload {
		globs, key = cfg.Write, "write"
	}
	rootDir, rel, ok := allowedRoot(globs, req.Path)
	if !ok {
		log.Warn("file transfer refused", "direction", req.Direction.String(), "path", req.Path)
		return fmt.Errorf("not allowed: %s %s; the device's agent.yaml files.%s does not cover it", req.Direction, req.Path, key)
	}
	if fi, err := os.Stat(rootDir); (err == nil && !fi.IsDir() || errors.Is(err, fs.ErrNotExist)) && rel == "." {
		// The allowed path is the file itself (or one to be created): open
		// its directory, and only it.
		rootDir, rel = filepath.Dir(rootDir), filepath.Base(rootDir)
	} else if err == nil && !fi.IsDir() {
		return fmt.Errorf("%s: %s is not a directory", req.Path, rootDir)
	}
	root, err := openRoot(rootDir, cfg.FollowSymlinks)
	if err != nil {
		return err
	}
	defer root.Close()
	if !cfg.FollowSymlinks {
		if err := noSymlinks(root, rel); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Abort() })
	defer stop()
	t := &transfer{cfg: cfg, root: root, rel: rel, req: req, st: st, log: log, srv: s, ctx: ctx}
	if req.Direction == DirDownload {
		return t.download()
	}
	return t.upload()
}

// openRoot opens dir as a root. Without followLinks, dir itself must not
// go through a symbolic link.
func openRoot(dir string, followLinks bool) (*os.Root, error) {
	if !followLinks {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil && real != dir {
			return nil, fmt.Errorf("%s goes through a symbolic link (to %s), and files.follow_symlinks is off", dir, real)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, trimPathErr(err))
	}
	return root, nil
}

// noSymlinks refuses a rel path any of whose components is a symbolic
// link; components that do not exist yet (an upload's target) pass.
func noSymlinks(root *os.Root, rel string) error {
	if rel == "." {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := root.Lstat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return trimPathErr(err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link, and files.follow_symlinks is off", p)
		}
	}
	return nil
}

// trimPathErr turns "openat x: no such file or directory" into its cause
// with the path, for Error answers.
func trimPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// transfer is one stream being served.
type transfer struct {
	srv  *Server
	ctx  context.Context
	cfg  *Config
	root *os.Root
	rel  string
	req  Request
	st   *transport.Stream
	log  *slog.Logger
	up   *upload // an upload's hold on its target
}

// preempted reports an upload whose place a retry took.
func (t *transfer) preempted() bool {
	select {
	case <-t.up.preempt:
		return true
	default:
		return false
	}
}

func (t *transfer) ext() *Ext { return t.req.Tether }

func (t *transfer) download() error {
	fi, err := t.root.Stat(t.rel)
	if err != nil {
		return fmt.Errorf("%s: %w", t.req.Path, unwrapPath(err))
	}
	switch {
	case fi.Mode().IsRegular() && t.ext() != nil:
		return t.downloadRaw()
	case fi.Mode().IsRegular() || fi.IsDir():
		return t.downloadTar()
	}
	return fmt.Errorf("%s is a special file (%s); only files and directories are sent", t.req.Path, fi.Mode().Type())
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (t *transfer) idleRW() io.ReadWriter { return &idleRW{st: t.st, d: t.cfg.idle()} }

func (t *transfer) downloadRaw() error {
	x := t.ext()
	flag := os.O_RDONLY | oNonBlock // a FIFO swapped in after the stat must not block the open
	if !t.cfg.FollowSymlinks {
		flag |= oNoFollow
	}
	f, err := t.root.OpenFile(t.rel, flag, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", t.req.Path, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", t.req.Path)
	}
	size, mtime := fi.Size(), fi.ModTime().UnixNano()
	var off int64
	if x.Offset > 0 && x.Size == size && x.MTimeNS == mtime && x.Offset <= size {
		off = x.Offset
	}
	ans, _ := json.Marshal(Answer{V: Version, Raw: true, Gzip: x.Gzip, Offset: off, Size: size, MTimeNS: mtime, Mode: uint32(fi.Mode().Perm())})
	if err := wire.WriteOK(t.st, ans); err != nil {
		return err
	}
	fw := newFrameWriter(t.idleRW())
	// The trailer carries the whole file's SHA-256. From the start, it is
	// that of the bytes sent. On a resume, the bytes before off must be
	// read too, which on a slow disk takes longer than the client waits
	// for the answer: they are hashed after the answer, with the rest of
	// the file, while the body goes out; the body's last bytes are held
	// back until that ends, and go out one at a time meanwhile so that the
	// client sees progress.
	h := sha256.New()
	var (
		src  io.Reader = io.TeeReader(io.LimitReader(f, size), h)
		fh   *fileHasher
		hold []byte
	)
	if off > 0 {
		src = io.NewSectionReader(f, off, size-off)
		hold = make([]byte, min(size-off, holdBack))
		fh = startHashFile(t.ctx, f, size)
		defer fh.stop()
	}
	body := io.LimitReader(src, size-off-int64(len(hold)))
	var n int64
	var zw *gzip.Writer
	if x.Gzip {
		zw, _ = gzip.NewWriterLevel(dataWriter{fw}, gzip.BestSpeed)
		if n, err = io.Copy(zw, body); err == nil && fh == nil {
			err = zw.Close()
		}
	} else {
		n, err = fw.ReadFrom(body)
	}
	if err == nil && len(hold) > 0 {
		var k int
		k, err = io.ReadFull(src, hold)
		n += int64(k)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			hold, err = hold[:k], nil
		}
	}
	var sum string
	if err == nil && n == size-off {
		if fh == nil {
			sum = sumHex(h.Sum(nil))
		} else {
			sum, err = t.sendHeld(fw, zw, hold, fh)
		}
		if herr := (*hashError)(nil); errors.As(err, &herr) {
			if herr.n < size {
				n = herr.n - off
				err = nil
			} else {
				err = herr.err
			}
		}
	}
	switch {
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the client took no data for %v", t.cfg.idle())
	case err != nil && isStreamErr(err):
		return err
	case err != nil:
		return fw.end(FrameError, []byte(fmt.Sprintf("read %s: %v", t.req.Path, unwrapPath(err))))
	case n < size-off:
		return fw.end(FrameError, []byte(fmt.Sprintf("%s shrank from %d to %d bytes while being sent; try again", t.req.Path, size, off+n)))
	}
	tr, _ := json.Marshal(Trailer{Size: size, SHA256: sum})
	if err := fw.end(FrameTrailer, tr); err != nil {
		return err
	}
	t.log.Info("file sent", "path", t.req.Path, "offset", off, "bytes", n, "sha256", sum)
	return t.st.CloseWrite()
}

// holdBack is the most bytes a resumed download holds back until the
// whole file is hashed; keepAlive is how often it sends one of them
// meanwhile, well within the 60 s a client waits for data.
const (
	holdBack  = 4096
	keepAlive = 5 * time.Second
)

// sendHeld sends the body's last bytes, hold, once fh has the whole
// file's checksum, and one of them every keepAlive until then. zw, when
// not nil, is the gzip stream of the body, still open. It returns the
// checksum.
func (t *transfer) sendHeld(fw *frameWriter, zw *gzip.Writer, hold []byte, fh *fileHasher) (string, error) {
	var w io.Writer = dataWriter{fw}
	if zw != nil {
		w = zw
	}
	// send writes p and pushes it, and all before it, out to the client.
	send := func(p []byte) error {
		if _, err := w.Write(p); err != nil {
			return err
		}
		if zw != nil {
			if err := zw.Flush(); err != nil {
				return err
			}
		}
		return fw.flush()
	}
	if err := send(nil); err != nil {
		return "", err
	}
	every := t.srv.keepAlive
	if every <= 0 {
		every = keepAlive
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for len(hold) > 1 && !fh.done() {
		select {
		case r := <-fh.c:
			fh.res = &r
		case <-tick.C:
			if err := send(hold[:1]); err != nil {
				return "", err
			}
			hold = hold[1:]
		}
	}
	r := fh.result()
	if r.err != nil {
		return "", r.err
	}
	if _, err := w.Write(hold); err != nil {
		return "", err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return "", err
		}
	}
	return r.sum, nil
}

// fileHasher hashes a file in a goroutine of its own.
type fileHasher struct {
	c      chan hashResult
	cancel context.CancelFunc
	res    *hashResult
}

func startHashFile(ctx context.Context, f *os.File, size int64) *fileHasher {
	ctx, cancel := context.WithCancel(ctx)
	fh := &fileHasher{c: make(chan hashResult, 1), cancel: cancel}
	go func() { fh.c <- hashFile(ctx, f, size) }()
	return fh
}

// got waits for the result, unless it is in.
func (fh *fileHasher) got() {
	if fh.res == nil {
		r := <-fh.c
		fh.res = &r
	}
}

func (fh *fileHasher) done() bool { return fh.res != nil }

// result waits for the result.
func (fh *fileHasher) result() hashResult {
	fh.got()
	return *fh.res
}

// stop ends the hashing, and waits until the file is no longer read.
func (fh *fileHasher) stop() {
	fh.cancel()
	fh.got()
}

// hashResult is the outcome of hashFile.
type hashResult struct {
	sum string
	err error
}

// hashError is a failed read of the file being hashed: at offset n, the
// end of a file that shrank (err nil), or err.
type hashError struct {
	n   int64
	err error
}

func (e *hashError) Error() string { return fmt.Sprintf("at %d: %v", e.n, e.err) }

// hashFile returns the SHA-256 of f's first size bytes, read at their
// offsets (the file's own offset is another reader's), or a *hashError.
// It stops early when ctx ends.
func hashFile(ctx context.Context, f *os.File, size int64) hashResult {
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	for n < size {
		if err := ctx.Err(); err != nil {
			return hashResult{err: err}
		}
		k, err := f.ReadAt(buf[:min(int64(len(buf)), size-n)], n)
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF && n < size {
			return hashResult{err: &hashError{n: n}}
		}
		if err != nil && err != io.EOF {
			return hashResult{err: &hashError{n: size, err: err}}
		}
	}
	return hashResult{sum: sumHex(h.Sum(nil))}
}

// isStreamErr reports an error of the stream itself (reset, lost,
// closed), as opposed to one of the file.
func isStreamErr(err error) bool {
	var se *sendError
	return errors.As(err, &se) || errors.Is(err, transport.ErrStreamReset) || errors.Is(err, transport.ErrConnLost) ||
		errors.Is(err, transport.ErrSessionClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrDeadlineExceeded)
}

func (t *transfer) downloadTar() error {
	gz := t.ext() == nil || !t.ext().NoGzip
	var ans []byte
	if t.ext() != nil {
		ans, _ = json.Marshal(Answer{V: Version, Gzip: gz})
	}
	if err := wire.WriteOK(t.st, ans); err != nil {
		return err
	}
	var w io.Writer = t.idleRW()
	var zw *gzip.Writer
	if gz {
		zw, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		w = zw
	}
	tw := tar.NewWriter(w)
	base := path.Base(t.req.Path)
	err := WriteTar(tw, t.root, t.rel, base, func(name, why string) {
		t.log.Info("file transfer: entry skipped", "name", name, "why", why)
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", t.req.Path, err)
	}
	t.log.Info("archive sent", "path", t.req.Path)
	return t.st.CloseWrite()
}

// finish answers an upload with its outcome: OK with payload, or Error.
func (t *transfer) finish(payload []byte, err error) error {
	if err != nil {
		t.log.Warn("upload failed", "path", t.req.Path, "err", err)
		if werr := wire.WriteError(t.st, err.Error()); werr != nil {
			return werr
		}
		_ = t.st.CloseWrite()
		return nil
	}
	if err := wire.WriteOK(t.st, payload); err != nil {
		return err
	}
	return t.st.CloseWrite()
}

func (t *transfer) upload() error {
	x := t.ext()
	if x != nil && x.Raw {
		return t.uploadRaw()
	}
	gz := x == nil || !x.NoGzip
	var ans []byte
	if x != nil {
		ans, _ = json.Marshal(Answer{V: Version, Gzip: gz})
	}
	if err := wire.WriteOK(t.st, ans); err != nil {
		return err
	}
	var r io.Reader = t.idleRW()
	var zr *gzip.Reader
	if gz {
		var err error
		if zr, err = gzip.NewReader(r); err != nil {
			return t.finish(nil, fmt.Errorf("the upload is not gzip: %v", err))
		}
		zr.Multistream(false)
		r = zr
	}
	entries, n, err := Extract(t.root, t.rel, r, t.cfg.limits())
	if err != nil {
		if isStreamErr(err) {
			return err
		}
		return t.finish(nil, fmt.Errorf("extract into %s: %w", t.req.Path, err))
	}
	if zr != nil {
		// The end of the tar archive is padding: read the gzip member to its
		// end so that its checksum is checked, within the size bound.
		if _, err := io.Copy(io.Discard, io.LimitReader(zr, 1<<20)); err != nil {
			return t.finish(nil, fmt.Errorf("the upload's gzip stream is damaged: %v", err))
		}
	}
	t.log.Info("archive received", "path", t.req.Path, "entries", entries, "bytes", n)
	return t.finish(nil, nil)
}

// sidecar is what a partial upload's sidecar file holds.
type sidecar struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// State is the SHA-256 state (crypto/sha256's marshalled digest)
	// after the partial's first Held bytes, saved when an upload stops,
	// so that a retry need not read them again: on a slow disk that read
	// takes longer than the client waits for the answer. It holds only
	// while the partial has Held bytes and the modification time
	// HeldMTimeNS; otherwise the partial is read as before.
	Held        int64  `json:"held,omitempty"`
	HeldMTimeNS int64  `json:"held_mtime_ns,omitempty"`
	State       []byte `json:"state,omitempty"`
}

func (t *transfer) uploadRaw() error {
	x := t.ext()
	rel := t.rel
	if fi, err := t.root.Stat(rel); err == nil && fi.IsDir() {
		if x.Name == "" {
			return fmt.Errorf("%s is a directory; give the file's name in the path", t.req.Path)
		}
		rel = path.Join(rel, x.Name)
	}
	if fi, err := t.root.Lstat(rel); err == nil {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link; refusing to write through it", path.Join(path.Dir(t.req.Path), path.Base(rel)))
		case fi.IsDir():
			return fmt.Errorf("%s is a directory", rel)
		case !fi.Mode().IsRegular():
			return fmt.Errorf("%s is a special file; refusing to write to it", rel)
		}
	}
	dir := path.Dir(rel)
	if fi, err := t.root.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("the directory of %s does not exist; create it first", t.req.Path)
	}
	// A retry may arrive while the device still serves the attempt whose
	// connection was lost: it waits for that one to end.
	var file string
	if x.SHA256 != "" {
		file = fmt.Sprintf("%d %s", x.Size, x.SHA256)
	}
	up, unlock, err := t.srv.lock(t.ctx, t.root.Name()+"/"+rel, file, t.st, t.cfg.idle())
	if err != nil {
		return err
	}
	defer unlock()
	t.up = up
	lim := t.cfg.limits()
	if x.Size > lim.maxBytes() {
		return fmt.Errorf("%s: %d bytes is more than this device accepts (files.max_size, %d bytes)", t.req.Path, x.Size, lim.maxBytes())
	}
	t.sweep(dir)

	var (
		name string
		f    *os.File
		off  int64
		h    = sha256.New()
		keep = x.SHA256 != "" // a partial a retry can resume
	)
	if keep {
		name, f, off, err = t.openPartial(rel, x, h)
	} else {
		name, f, err = createTemp(t.root, rel)
	}
	if err != nil {
		return err
	}
	done, closed := false, false
	closeFile := func() {
		if closed {
			return
		}
		closed = true
		f.Close()
		if !done && !keep {
			_ = t.root.Remove(name)
		}
	}
	defer closeFile()
	discard := func() {
		keep = false
		_ = t.root.Remove(name + ".json")
	}
	// refuse ends the upload with err once the file it wrote is gone, so
	// that a client that hears of the failure finds nothing left of it.
	refuse := func(err error) error {
		discard()
		closeFile()
		return t.finish(nil, err)
	}
	ans, _ := json.Marshal(Answer{V: Version, Raw: true, Gzip: x.Gzip, Offset: off})
	if err := wire.WriteOK(t.st, ans); err != nil {
		return err
	}
	fr := &frameReader{r: t.idleRW()}
	var body io.Reader = fr
	if x.Gzip {
		body = &gunzipFrames{fr: fr}
	}
	lr := &maxReader{r: body, n: x.Size - off}
	var fw io.Writer = newWritebackWriter(f, off)
	if t.srv.wrapFile != nil {
		fw = t.srv.wrapFile(f)
	}
	n, err := copyAligned(io.MultiWriter(fw, h), lr, off, make([]byte, 256<<10))
	if err != nil {
		var rfe *RemoteFrameError
		switch {
		case errors.As(err, &rfe):
			discard()
			t.log.Info("upload abandoned by the client", "path", t.req.Path, "reason", rfe.Reason)
			return nil
		case isStreamErr(err) || errors.Is(err, errEndedEarly):
			// The client went away: a retry resumes. (A client that gave
			// up waiting for the answer closes the stream at once.)
			if keep {
				t.saveStateOf(f, name, x, h, off+n)
			}
			return err
		case errors.Is(err, ErrLimit) || errors.Is(err, ErrFrame):
			return refuse(fmt.Errorf("%s: %w", t.req.Path, err))
		}
		return refuse(fmt.Errorf("write %s: %v; the target is unchanged", t.req.Path, unwrapPath(err)))
	}
	sum := sumHex(h.Sum(nil))
	tr := fr.trailer
	switch {
	case off+n != x.Size || tr.Size != x.Size:
		return refuse(fmt.Errorf("%s: received %d bytes, the request announced %d and the trailer %d; the target is unchanged", t.req.Path, off+n, x.Size, tr.Size))
	case tr.SHA256 != sum || (x.SHA256 != "" && x.SHA256 != sum):
		return refuse(fmt.Errorf("%w: %s: the bytes received have SHA-256 %s, the client sent %s; the target is unchanged", ErrChecksum, t.req.Path, sum, tr.SHA256))
	}
	if err := t.commit(f, name, rel, x); err != nil {
		return refuse(fmt.Errorf("store %s: %v; the target is unchanged", t.req.Path, err))
	}
	done, keep = true, true // renamed: nothing to remove
	_ = t.root.Remove(name + ".json")
	t.log.Info("file received", "path", t.req.Path, "offset", off, "bytes", n, "sha256", sum)
	out, _ := json.Marshal(Trailer{Size: x.Size, SHA256: sum})
	return t.finish(out, nil)
}

// openPartial opens the partial upload of rel for x: the one a sidecar
// says holds the start of the same file (same size and SHA-256), whose
// bytes are hashed into h, or a new one.
func (t *transfer) openPartial(rel string, x *Ext, h hash.Hash) (string, *os.File, int64, error) {
	name := path.Join(path.Dir(rel), "."+path.Base(rel)+".tether-part")
	side := name + ".json"
	if b, err := readSmall(t.root, side, maxSidecar); err == nil {
		var sc sidecar
		if json.Unmarshal(b, &sc) == nil && sc.Size == x.Size && sc.SHA256 == x.SHA256 {
			f, err := t.root.OpenFile(name, os.O_RDWR|oNoFollow, 0)
			if err == nil {
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() <= x.Size {
					var from int64
					if sc.Held > 0 && sc.Held <= fi.Size() && sc.HeldMTimeNS == fi.ModTime().UnixNano() &&
						h.(encoding.BinaryUnmarshaler).UnmarshalBinary(sc.State) == nil {
						from = sc.Held
					} else {
						h.Reset()
					}
					err := t.hashPartial(f, name, x, h, from, fi)
					if err == nil {
						return name, f, fi.Size(), nil
					}
					if errors.Is(err, errPreempted) {
						f.Close()
						return "", nil, 0, err
					}
				}
				f.Close()
			}
		}
	}
	h.Reset()
	_ = t.root.Remove(name)
	f, err := t.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", nil, 0, fmt.Errorf("create the partial file of %s: %w", t.req.Path, unwrapPath(err))
	}
	b, _ := json.Marshal(sidecar{Size: x.Size, SHA256: x.SHA256})
	if err := t.root.WriteFile(side, b, 0o600); err != nil {
		f.Close()
		_ = t.root.Remove(name)
		return "", nil, 0, fmt.Errorf("create the partial file of %s: %w", t.req.Path, unwrapPath(err))
	}
	return name, f, 0, nil
}

// checkpointEvery is how many bytes of a partial upload are hashed
// between two saves of the hash state, when the partial is read on
// resume: a retry after the client gave up waiting goes on from there.
const checkpointEvery = 64 << 20

// errPreempted ends an upload that a retry of the same file replaces.
var errPreempted = errors.New("files: a retry of this upload took its place")

// hashPartial hashes into h the bytes of the partial f (whose FileInfo is
// fi) from offset from on, h holding the state for the bytes before it,
// and saves the state in the sidecar every checkpointEvery bytes. It
// leaves f's offset at its end.
func (t *transfer) hashPartial(f *os.File, name string, x *Ext, h hash.Hash, from int64, fi fs.FileInfo) error {
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err
	}
	mt := fi.ModTime().UnixNano()
	buf := make([]byte, 256<<10)
	for pos := from; pos < fi.Size(); {
		if t.preempted() {
			t.saveState(name, x, h, pos, mt)
			return errPreempted
		}
		k, err := io.ReadFull(f, buf[:min(int64(len(buf)), fi.Size()-pos)])
		h.Write(buf[:k])
		pos += int64(k)
		if err != nil {
			return err
		}
		if pos/checkpointEvery != (pos-int64(k))/checkpointEvery || pos == fi.Size() {
			t.saveState(name, x, h, pos, mt)
		}
	}
	return nil
}

// saveStateOf saves the state of h, which hashed the first held bytes of
// the partial f, when the partial has that size: a write that failed part
// way leaves the sidecar as it was, and the partial is read on resume.
func (t *transfer) saveStateOf(f *os.File, name string, x *Ext, h hash.Hash, held int64) {
	if fi, err := f.Stat(); err == nil && fi.Size() == held {
		t.saveState(name, x, h, held, fi.ModTime().UnixNano())
	}
}

// saveState records in the partial's sidecar the state of h, which
// hashed the partial's first held bytes, with the partial's modification
// time mtime, so that the next attempt need not read them again.
func (t *transfer) saveState(name string, x *Ext, h hash.Hash, held, mtime int64) {
	if held == 0 {
		return
	}
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return
	}
	b, _ := json.Marshal(sidecar{Size: x.Size, SHA256: x.SHA256, Held: held, HeldMTimeNS: mtime, State: state})
	if err := t.root.WriteFile(name+".json", b, 0o600); err != nil {
		t.log.Warn("partial upload: sidecar not updated", "path", t.req.Path, "err", err)
	}
}

// commit gives the checked file its mode, owner and time, syncs it and
// renames it over rel, then syncs the directory.
func (t *transfer) commit(f *os.File, name, rel string, x *Ext) error {
	lim := t.cfg.limits()
	mode := fs.FileMode(x.Mode)
	if mode == 0 {
		mode = 0o644
	}
	if err := f.Chmod(lim.perm(mode)); err != nil {
		return err
	}
	if err := lim.chown(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if x.MTimeNS != 0 {
		mt := time.Unix(0, x.MTimeNS)
		if err := t.root.Chtimes(name, mt, mt); err != nil {
			return err
		}
	}
	if err := t.root.Rename(name, rel); err != nil {
		return err
	}
	if d, err := t.root.Open(path.Dir(rel)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// sweep removes partial uploads and temporary files in dir older than
// PartialMaxAge.
func (t *transfer) sweep(dir string) {
	maxAge := t.cfg.PartialMaxAge
	if maxAge <= 0 {
		maxAge = DefaultPartialMaxAge
	}
	d, err := t.root.Open(dir)
	if err != nil {
		return
	}
	ents, _ := d.ReadDir(-1)
	d.Close()
	for _, e := range ents {
		n := e.Name()
		if !isOurTemp(n) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		mt := fi.ModTime()
		// A partial upload and its sidecar go together, by the younger of
		// the two: the sidecar is written when the partial is created, the
		// partial on every attempt that adds to it, and one without the
		// other is not resumed.
		if other, ok := partialPair(n); ok {
			if ofi, err := t.root.Lstat(path.Join(dir, other)); err == nil && ofi.ModTime().After(mt) {
				mt = ofi.ModTime()
			}
		}
		if time.Since(mt) > maxAge {
			if t.root.Remove(path.Join(dir, n)) == nil {
				t.log.Info("old partial upload removed", "name", path.Join(dir, n))
			}
		}
	}
}

// partialPair returns the name of the other half of a partial upload
// (".<name>.tether-part" and its ".json" sidecar).
func partialPair(n string) (string, bool) {
	if s, ok := strings.CutSuffix(n, ".tether-part.json"); ok {
		return s + ".tether-part", true
	}
	if strings.HasSuffix(n, ".tether-part") {
		return n + ".json", true
	}
	return "", false
}

// isOurTemp reports the names this package gives partial uploads
// (".<name>.tether-part" and its ".json" sidecar) and temporary files
// (".<name>.tether-<16 hex digits>").
func isOurTemp(n string) bool {
	i := strings.LastIndex(n, ".tether-")
	if i < 2 || n[0] != '.' {
		return false
	}
	switch rest := n[i+len(".tether-"):]; {
	case rest == "part" || rest == "part.json":
		return true
	case len(rest) == 16:
		for _, c := range rest {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	return false
}

func readSmall(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// gunzipFrames reads a gzip stream carried in data frames, then the frame
// that ends the body, so that the trailer is read.
type gunzipFrames struct {
	fr  *frameReader
	zr  *gzip.Reader
	eof bool
}

func (g *gunzipFrames) Read(p []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.fr)
		if err != nil {
			if errors.Is(err, errEndedEarly) {
				return 0, err
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The body ended before any data: take the end frame's word.
				if _, ferr := g.fr.Read(p[:0]); ferr != nil && ferr != io.EOF {
					return 0, ferr
				}
			}
			return 0, fmt.Errorf("%w: the compressed body: %v", ErrFrame, err)
		}
		zr.Multistream(false)
		g.zr = zr
	}
	if g.eof {
		return 0, io.EOF
	}
	n, err := g.zr.Read(p)
	if err == io.EOF {
		// The gzip stream ended: the next frame must end the body.
		var one [1]byte
		if m, ferr := g.fr.Read(one[:]); m > 0 {
			return n, fmt.Errorf("%w: data after the compressed stream", ErrFrame)
		} else if ferr != io.EOF {
			return n, ferr
		}
		g.eof = true
	}
	return n, err
}

// maxReader fails once r yields more than n bytes.
type maxReader struct {
	r io.Reader
	n int64
}

func (m *maxReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n -= int64(n)
	if m.n < 0 {
		return n, fmt.Errorf("%w: more bytes than the request announced", ErrLimit)
	}
	return n, err
}

// idleRW gives the reads and writes of a stream a deadline of d from
// their start, so that a peer that stops ends the transfer. A deadline is
// set at most every d/16, to d+d/16 from then (setting one costs an
// allocation and wakes the reader), so that an idle stream ends after
// between d and d+d/16. One goroutine reads at a time.
type idleRW struct {
	st interface {
		io.ReadWriter
		SetReadDeadline(time.Time) error
		SetWriteDeadline(time.Time) error
	}
	d time.Duration

	rset time.Time // when the read deadline was last set

	mu      sync.Mutex
	wset    time.Time // when the write deadline was last set
	stopped bool      // stop was called: writes fail at once
}

// renew reports whether a deadline set at last is due for renewal at now.
func (i *idleRW) renew(last, now time.Time) bool { return now.Sub(last) >= i.d/16 }

func (i *idleRW) Read(p []byte) (int, error) {
	i.renewRead()
	return i.st.Read(p)
}

// renewRead moves the read deadline on, when it is due: for a reader that
// takes the stream's bytes some other way than Read (WriteTo).
func (i *idleRW) renewRead() {
	if now := time.Now(); i.renew(i.rset, now) {
		_ = i.st.SetReadDeadline(now.Add(i.d + i.d/16))
		i.rset = now
	}
}

// errAnswered ends the writes of an upload that the device answered early.
var errAnswered = &sendError{errors.New("files: the device answered before the whole upload was sent")}

func (i *idleRW) Write(p []byte) (int, error) {
	i.mu.Lock()
	if i.stopped {
		i.mu.Unlock()
		return 0, errAnswered
	}
	if now := time.Now(); i.renew(i.wset, now) {
		_ = i.st.SetWriteDeadline(now.Add(i.d + i.d/16))
		i.wset = now
	}
	i.mu.Unlock()
	return i.st.Write(p)
}

// stop fails the Write in progress, if any, and every later one.
func (i *idleRW) stop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stopped = true
	_ = i.st.SetWriteDeadline(time.Now())
}
