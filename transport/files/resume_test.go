package files_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// cutProxy relays TCP connections to target and cuts every open
// connection each time the bytes relayed in one direction pass the next
// of its cut points.
type cutProxy struct {
	ln     net.Listener
	target string
	down   bool // count target-to-client bytes (else client-to-target)

	mu sync.Mutex
	// mu guards the following.
	cuts    []int64 // ascending
	counted int64
	conns   map[net.Conn]struct{}
	made    int

	wg sync.WaitGroup
}

func newCutProxy(t testing.TB, target string, down bool, cuts []int64) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, target: target, down: down, cuts: cuts, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out, p.down)  // target to client
		go p.pipe(out, in, !p.down) // client to target
	}
}

// pipe copies src to dst; counted says whether these bytes count.
func (p *cutProxy) pipe(dst, src net.Conn, counted bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
			if counted && p.count(int64(n)) {
				p.cutAll()
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

// count adds n and reports whether a cut point was passed.
func (p *cutProxy) count(n int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counted += n
	if len(p.cuts) > 0 && p.counted >= p.cuts[0] {
		for len(p.cuts) > 0 && p.counted >= p.cuts[0] {
			p.cuts = p.cuts[1:]
		}
		p.made++
		return true
	}
	return false
}

func (p *cutProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

func (p *cutProxy) stats() (counted int64, made int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counted, p.made
}

// randomCuts returns n distinct points in (0, size) in ascending order.
func randomCuts(seed uint64, n int, size int64) []int64 {
	r := rand.New(rand.NewPCG(seed, seed))
	var cuts []int64
	for len(cuts) < n {
		c := 1 + r.Int64N(size-1)
		if !slices.Contains(cuts, c) {
			cuts = append(cuts, c)
		}
	}
	slices.Sort(cuts)
	return cuts
}

// resumeRig is a device serving dir, and a dialer whose sessions go
// through a cutProxy.
type resumeRig struct {
	proxy  *cutProxy
	dialer *client.Dialer
	broker *testbroker.Broker
	srv    *files.Server
}

func newResumeRig(t testing.TB, dir string, down bool, cuts []int64) *resumeRig {
	t.Helper()
	srv := &files.Server{}
	srv.SetConfig(files.Config{Read: []string{dir}, Write: []string{dir}, MaxSize: 1 << 30})
	if tt, ok := t.(*testing.T); ok {
		srv.Logger = testbroker.Logger(tt)
	}
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{wire.MsgFileTransfer: srv.Serve})
	p := newCutProxy(t, b.Addr(), down, cuts)
	d := b.Dialer(nil)
	d.Edge = "https://" + p.ln.Addr().String()
	return &resumeRig{proxy: p, dialer: d, broker: b, srv: srv}
}

// retry runs op on a fresh session until it succeeds or fails with
// something other than a lost connection, at most 30 times. It returns
// the number of attempts.
func (r *resumeRig) retry(t testing.TB, op func(ctx context.Context, cl *client.Client) error) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for attempt := 1; attempt <= 30; attempt++ {
		cl, err := r.dialer.Dial(ctx, testbroker.DeviceID)
		if err == nil {
			err = op(ctx, cl)
			cl.Close()
		}
		if err == nil {
			return attempt
		}
		require.True(t, retryable(err), "attempt %d: %v", attempt, err)
		t.Logf("attempt %d cut: %v", attempt, err)
	}
	t.Fatal("the transfer did not complete in 30 attempts")
	return 0
}

// retryable reports errors of a lost connection, as a retrying client
// treats them.
func retryable(err error) bool {
	var ne net.Error
	return errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrStreamReset) ||
		errors.Is(err, transport.ErrSessionClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, wire.ErrNoAnswer) || errors.Is(err, wire.ErrTruncated) || errors.Is(err, files.ErrFrame) ||
		errors.As(err, &ne)
}

const bigFile = 256 << 20

func TestResumeDownloadCutTenTimes(t *testing.T) {
	dir := tempDir(t)
	src := filepath.Join(dir, "firmware.bin")
	want := writeRandom(t, src, 7, bigFile)
	r := newResumeRig(t, dir, true, randomCuts(1, 10, bigFile))
	local := filepath.Join(tempDir(t), "copy.bin")
	var received atomic.Int64
	attempts := r.retry(t, func(ctx context.Context, cl *client.Client) error {
		_, err := files.DownloadFile(ctx, cl, src, local, &files.FileOptions{Resume: true,
			Progress: func(n int) { received.Add(int64(n)) }})
		return err
	})
	relayed, cuts := r.proxy.stats()
	require.Equal(t, 10, cuts, "cuts made")
	require.Equal(t, 11, attempts, "one attempt per cut, then one that completes")
	require.Equal(t, want, fileSum(t, local))
	require.LessOrEqual(t, relayed, int64(bigFile*11/10), "bytes relayed to the client: %d for a file of %d", relayed, bigFile)
	require.Equal(t, int64(bigFile), received.Load(), "each byte of the file crosses to the client's disk once")
	requireNoLeftovers(t, filepath.Dir(local))
}

func TestResumeUploadCutTenTimes(t *testing.T) {
	dir := tempDir(t)
	local := filepath.Join(tempDir(t), "firmware.bin")
	want := writeRandom(t, local, 8, bigFile)
	r := newResumeRig(t, dir, false, randomCuts(2, 10, bigFile))
	dst := filepath.Join(dir, "firmware.bin")
	r.retry(t, func(ctx context.Context, cl *client.Client) error {
		_, err := files.UploadFile(ctx, cl, local, dst, &files.FileOptions{Resume: true})
		return err
	})
	relayed, cuts := r.proxy.stats()
	require.Equal(t, 10, cuts, "cuts made")
	require.Equal(t, want, fileSum(t, dst))
	require.LessOrEqual(t, relayed, int64(bigFile*11/10), "bytes relayed to the device: %d for a file of %d", relayed, bigFile)
	requireNoLeftovers(t, dir)
}

func TestResumeRestartsWhenTheFileChanged(t *testing.T) {
	dir := tempDir(t)
	src := filepath.Join(dir, "log.bin")
	writeRandom(t, src, 9, 8<<20)
	r := newResumeRig(t, dir, true, []int64{4 << 20})
	local := filepath.Join(tempDir(t), "log.bin")
	var offsets []int64
	var want string
	r.retry(t, func(ctx context.Context, cl *client.Client) error {
		_, err := files.DownloadFile(ctx, cl, src, local, &files.FileOptions{Resume: true,
			Start: func(i files.Info) error { offsets = append(offsets, i.Offset); return nil }})
		if err != nil && want == "" {
			// The file changes between the attempts.
			want = writeRandom(t, src, 10, 8<<20)
			require.NoError(t, os.Chtimes(src, time.Now().Add(time.Hour), time.Now().Add(time.Hour)))
		}
		return err
	})
	require.Equal(t, []int64{0, 0}, offsets, "the second attempt starts over")
	require.Equal(t, want, fileSum(t, local))

	// Unchanged, a cut download resumes where it stopped.
	r2 := newResumeRig(t, dir, true, []int64{4 << 20})
	local2 := filepath.Join(tempDir(t), "log.bin")
	offsets = nil
	r2.retry(t, func(ctx context.Context, cl *client.Client) error {
		_, err := files.DownloadFile(ctx, cl, src, local2, &files.FileOptions{Resume: true,
			Start: func(i files.Info) error { offsets = append(offsets, i.Offset); return nil }})
		return err
	})
	require.Len(t, offsets, 2)
	require.Greater(t, offsets[1], int64(0), "the second attempt resumes")
	require.Equal(t, want, fileSum(t, local2))
}

// hastyClient dials the rig's device straight (no cuts) with a client
// that waits only 50 ms for the answer to an opening message: less than
// it takes to read a partial file of hundreds of MB.
func (r *resumeRig) hastyClient(t testing.TB) *client.Client {
	t.Helper()
	return r.broker.DialClient(t, &transport.Config{OpenTimeout: 50 * time.Millisecond})
}

const resumeBig = 384 << 20

func TestResumeUploadOfABigPartialAnswersAtOnce(t *testing.T) {
	dir := tempDir(t)
	local := filepath.Join(tempDir(t), "firmware.bin")
	want := writeRandom(t, local, 11, resumeBig)
	r := newResumeRig(t, dir, false, []int64{resumeBig - 16<<20})
	dst := filepath.Join(dir, "firmware.bin")
	cl, err := r.dialer.Dial(context.Background(), testbroker.DeviceID)
	require.NoError(t, err)
	_, err = files.UploadFile(context.Background(), cl, local, dst, &files.FileOptions{Resume: true})
	cl.Close()
	require.True(t, retryable(err), "the first attempt is cut: %v", err)
	// The device keeps the partial once it sees the connection gone.
	require.Eventually(t, func() bool { return files.Uploading(r.srv) == 0 }, 30*time.Second, 10*time.Millisecond)
	fi, err := os.Stat(filepath.Join(dir, ".firmware.bin.tether-part"))
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(resumeBig/2))

	var offset int64
	_, err = files.UploadFile(context.Background(), r.hastyClient(t), local, dst, &files.FileOptions{Resume: true,
		Start: func(i files.Info) error { offset = i.Offset; return nil }})
	require.NoError(t, err)
	require.Greater(t, offset, int64(resumeBig/2), "the upload resumes")
	require.Equal(t, want, fileSum(t, dst))
	requireNoLeftovers(t, dir)
}

func TestResumeDownloadOfABigPrefixAnswersAtOnce(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "gzip"}[gz], func(t *testing.T) {
			dir := tempDir(t)
			src := filepath.Join(dir, "firmware.bin")
			want := writeRandom(t, src, 12, resumeBig)
			r := newResumeRig(t, dir, true, []int64{resumeBig - 16<<20})
			local := filepath.Join(tempDir(t), "copy.bin")
			cl, err := r.dialer.Dial(context.Background(), testbroker.DeviceID)
			require.NoError(t, err)
			_, err = files.DownloadFile(context.Background(), cl, src, local, &files.FileOptions{Resume: true})
			cl.Close()
			require.True(t, retryable(err), "the first attempt is cut: %v", err)
			fi, err := os.Stat(local + files.PartialSuffix)
			require.NoError(t, err)
			require.Greater(t, fi.Size(), int64(resumeBig/2))

			var offset int64
			_, err = files.DownloadFile(context.Background(), r.hastyClient(t), src, local, &files.FileOptions{Resume: true, Gzip: gz,
				Start: func(i files.Info) error { offset = i.Offset; return nil }})
			require.NoError(t, err)
			require.Equal(t, fi.Size(), offset, "the download resumes")
			require.Equal(t, want, fileSum(t, local))
			requireNoLeftovers(t, filepath.Dir(local))
		})
	}
}

// flipByte changes the byte at off of the file at name.
func flipByte(t testing.TB, name string, off int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

func TestResumeDetectsAChangedPrefix(t *testing.T) {
	const size = 8 << 20
	t.Run("download", func(t *testing.T) {
		dir := tempDir(t)
		src := filepath.Join(dir, "log.bin")
		writeRandom(t, src, 13, size)
		r := newResumeRig(t, dir, true, []int64{size / 2})
		local := filepath.Join(tempDir(t), "log.bin")
		cl, err := r.dialer.Dial(context.Background(), testbroker.DeviceID)
		require.NoError(t, err)
		_, err = files.DownloadFile(context.Background(), cl, src, local, &files.FileOptions{Resume: true})
		cl.Close()
		require.True(t, retryable(err), "the first attempt is cut: %v", err)
		flipByte(t, local+files.PartialSuffix, 1000)

		var offset int64
		_, err = files.DownloadFile(context.Background(), r.hastyClient(t), src, local, &files.FileOptions{Resume: true,
			Start: func(i files.Info) error { offset = i.Offset; return nil }})
		require.Greater(t, offset, int64(0))
		require.ErrorIs(t, err, files.ErrChecksum)
	})
	t.Run("upload", func(t *testing.T) {
		dir := tempDir(t)
		local := filepath.Join(tempDir(t), "log.bin")
		writeRandom(t, local, 14, size)
		r := newResumeRig(t, dir, false, []int64{size / 2})
		dst := filepath.Join(dir, "log.bin")
		cl, err := r.dialer.Dial(context.Background(), testbroker.DeviceID)
		require.NoError(t, err)
		_, err = files.UploadFile(context.Background(), cl, local, dst, &files.FileOptions{Resume: true})
		cl.Close()
		require.True(t, retryable(err), "the first attempt is cut: %v", err)
		require.Eventually(t, func() bool { return files.Uploading(r.srv) == 0 }, 30*time.Second, 10*time.Millisecond)
		part := filepath.Join(dir, ".log.bin.tether-part")
		fi, err := os.Stat(part)
		require.NoError(t, err)
		flipByte(t, part, 1000)
		// A file system with a coarse clock may leave the time as it was.
		require.NoError(t, os.Chtimes(part, time.Now(), fi.ModTime().Add(time.Second)))

		var offset int64
		_, err = files.UploadFile(context.Background(), r.hastyClient(t), local, dst, &files.FileOptions{Resume: true,
			Start: func(i files.Info) error { offset = i.Offset; return nil }})
		require.Equal(t, fi.Size(), offset)
		require.ErrorIs(t, err, files.ErrChecksum)
		_, err = os.Stat(dst)
		require.ErrorIs(t, err, os.ErrNotExist, "the target is not written")
	})
}

func TestResumeUploadOfAnUnhashedPartialGetsFurtherEachTime(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "gzip"}[gz], func(t *testing.T) { testUnhashedPartial(t, gz) })
	}
}

func testUnhashedPartial(t *testing.T, gz bool) {
	dir := tempDir(t)
	local := filepath.Join(tempDir(t), "firmware.bin")
	want := writeRandom(t, local, 15, resumeBig)
	r := newResumeRig(t, dir, false, []int64{resumeBig - 16<<20})
	dst := filepath.Join(dir, "firmware.bin")
	cl, err := r.dialer.Dial(context.Background(), testbroker.DeviceID)
	require.NoError(t, err)
	_, err = files.UploadFile(context.Background(), cl, local, dst, &files.FileOptions{Resume: true})
	cl.Close()
	require.True(t, retryable(err), "the first attempt is cut: %v", err)
	require.Eventually(t, func() bool { return files.Uploading(r.srv) == 0 }, 30*time.Second, 10*time.Millisecond)
	// The sidecar holds no hash state, as when the agent was killed.
	side := filepath.Join(dir, ".firmware.bin.tether-part.json")
	b, err := os.ReadFile(side)
	require.NoError(t, err)
	var sc map[string]any
	require.NoError(t, json.Unmarshal(b, &sc))
	b, err = json.Marshal(map[string]any{"size": sc["size"], "sha256": sc["sha256"]})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(side, b, 0o600))

	// Each client gives up on the answer before the partial is read, and
	// each retry goes on from where the one before stopped reading it.
	cl2 := r.hastyClient(t)
	var offset int64
	for attempt := 1; ; attempt++ {
		_, err = files.UploadFile(context.Background(), cl2, local, dst, &files.FileOptions{Resume: true, Gzip: gz,
			Start: func(i files.Info) error { offset = i.Offset; return nil }})
		if err == nil {
			t.Logf("done after %d attempts", attempt)
			break
		}
		require.Less(t, attempt, 200, "attempt %d: %v", attempt, err)
		require.ErrorContains(t, err, "no answer within")
	}
	require.Greater(t, offset, int64(resumeBig/2), "the upload resumes")
	require.Equal(t, want, fileSum(t, dst))
	requireNoLeftovers(t, dir)
}

// stallReader yields r's first n bytes, then blocks until release closes,
// and then yields the rest of r.
type stallReader struct {
	r       io.Reader
	n       int64
	release chan struct{}
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.n <= 0 {
		<-s.release
		return s.r.Read(p)
	}
	p = p[:min(int64(len(p)), s.n)]
	k, err := s.r.Read(p)
	s.n -= int64(k)
	return k, err
}

func TestRetriedUploadTakesThePlaceOfAStalledOne(t *testing.T) {
	const size = 32 << 20
	dir := tempDir(t)
	local := filepath.Join(tempDir(t), "firmware.bin")
	want := writeRandom(t, local, 16, size)
	srv := rwServer(dir)
	cl := rig(t, srv)
	dst := filepath.Join(dir, "firmware.bin")

	// The first attempt stalls half way, its connection apparently alive.
	f, err := os.Open(local)
	require.NoError(t, err)
	defer f.Close()
	stall := &stallReader{r: f, n: size / 2, release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(stall.release) })
	defer release()
	first := make(chan error, 1)
	go func() {
		_, err := files.Upload(context.Background(), cl, dst, stall, &files.UploadOptions{Size: size, SHA256: want, Name: "firmware.bin"})
		first <- err
	}()
	require.Eventually(t, func() bool {
		fi, err := os.Stat(filepath.Join(dir, ".firmware.bin.tether-part"))
		return err == nil && fi.Size() > 0
	}, 30*time.Second, 10*time.Millisecond)

	// A retry of the same file does not wait for it.
	var offset int64
	_, err = files.UploadFile(context.Background(), rig(t, srv), local, dst, &files.FileOptions{Resume: true,
		Start: func(i files.Info) error { offset = i.Offset; return nil }})
	require.NoError(t, err)
	require.Greater(t, offset, int64(0), "the retry resumes what the first attempt sent")
	require.Equal(t, want, fileSum(t, dst))
	// The first attempt learns of it when it next writes: it may have
	// sent all it had before the retry came, and be waiting for its
	// source, as a client reading a slow pipe does. Its source then goes
	// on as if nothing happened: only the device can end it.
	release()
	err = <-first
	require.Error(t, err, "the first attempt ends")
	t.Logf("the first attempt: %v", err)
	requireNoLeftovers(t, dir)
}

func TestResumeDownloadOfAWholeFileHeld(t *testing.T) {
	for _, gz := range []bool{false, true} {
		dir := tempDir(t)
		src := filepath.Join(dir, "log.bin")
		want := writeRandom(t, src, 17, 1<<20)
		fi, err := os.Stat(src)
		require.NoError(t, err)
		local := filepath.Join(tempDir(t), "log.bin")
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(local+files.PartialSuffix, b, 0o600))
		side, err := json.Marshal(map[string]any{"path": src, "size": fi.Size(), "mtime_ns": fi.ModTime().UnixNano()})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(local+files.PartialSuffix+".json", side, 0o600))

		var offset int64
		_, err = files.DownloadFile(context.Background(), rig(t, rwServer(dir)), src, local, &files.FileOptions{Resume: true, Gzip: gz,
			Start: func(i files.Info) error { offset = i.Offset; return nil }})
		require.NoError(t, err, "gzip %v", gz)
		require.Equal(t, fi.Size(), offset)
		require.Equal(t, want, fileSum(t, local))
	}
}

func TestResumeDownloadSendsHeldBytesWhileHashing(t *testing.T) {
	for _, gz := range []bool{false, true} {
		const size = 128 << 20
		dir := tempDir(t)
		src := filepath.Join(dir, "fw.bin")
		want := writeRandom(t, src, 18, size)
		fi, err := os.Stat(src)
		require.NoError(t, err)
		local := filepath.Join(tempDir(t), "fw.bin")
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		// All but the last 100 bytes are held: the whole body is held back
		// while the device hashes the file, and trickles out meanwhile.
		require.NoError(t, os.WriteFile(local+files.PartialSuffix, b[:size-100], 0o600))
		side, err := json.Marshal(map[string]any{"path": src, "size": fi.Size(), "mtime_ns": fi.ModTime().UnixNano()})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(local+files.PartialSuffix+".json", side, 0o600))
		srv := rwServer(dir)
		files.SetKeepAlive(srv, 100*time.Microsecond)

		var offset int64
		res, err := files.DownloadFile(context.Background(), rig(t, srv), src, local, &files.FileOptions{Resume: true, Gzip: gz,
			Start: func(i files.Info) error { offset = i.Offset; return nil }})
		require.NoError(t, err, "gzip %v", gz)
		require.Equal(t, int64(size-100), offset)
		require.Equal(t, int64(100), res.Bytes)
		require.Equal(t, want, fileSum(t, local))
	}
}

// slowHeld is a partial download's held bytes on a disk slower than the
// device waits for a client to take its body.
type slowHeld struct {
	r     io.Reader
	delay time.Duration
	once  sync.Once
}

func (s *slowHeld) Read(p []byte) (int, error) {
	s.once.Do(func() { time.Sleep(s.delay) })
	return s.r.Read(p)
}

// TestResumeDownloadHashesTheHeldBytesFirst: the client's held bytes take
// longer to read than the device waits for a client to take the body
// (its idle timeout), and the body is larger than the stream's window.
// The client reads them before it asks, so the device never waits on it.
func TestResumeDownloadHashesTheHeldBytesFirst(t *testing.T) {
	const size = 8 << 20
	dir := tempDir(t)
	src := filepath.Join(dir, "fw.bin")
	want := writeRandom(t, src, 19, size)
	fi, err := os.Stat(src)
	require.NoError(t, err)
	body, err := os.ReadFile(src)
	require.NoError(t, err)
	srv := &files.Server{}
	srv.SetConfig(files.Config{Read: []string{dir}, IdleTimeout: time.Second})

	var got bytes.Buffer
	got.Write(body[:size/2])
	res, err := files.Download(context.Background(), rig(t, srv), src, &got, &files.DownloadOptions{
		Offset: size / 2, Size: fi.Size(), MTime: fi.ModTime(),
		Held: &slowHeld{r: bytes.NewReader(body[:size/2]), delay: 3 * time.Second}})
	require.NoError(t, err)
	require.Equal(t, int64(size/2), res.Offset)
	require.Equal(t, want, res.SHA256)
	require.Equal(t, body, got.Bytes())
}
