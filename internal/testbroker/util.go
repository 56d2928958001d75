package testbroker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// WaitLong bounds every wait of the tests that use this package. It only
// guards against hangs; no test asserts on elapsed time.
const WaitLong = 20 * time.Second

// Ctx returns a context that ends after WaitLong or with the test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), WaitLong)
	t.Cleanup(cancel)
	return ctx
}

// Logger returns a logger that writes every record, Debug included,
// through t.Log until the test's clean-up is over.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends lines to t.Log until the test's clean-up is over: a
// goroutine that logs after that would make the test panic.
type tWriter struct {
	t    testing.TB
	done atomic.Bool
}

func newTWriter(t testing.TB) *tWriter {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) }) // runs after every later clean-up
	return w
}

func (w *tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// LogRecorder is a slog.Handler that keeps every record and passes it on
// to t.Log, so that a test can count what was logged.
type LogRecorder struct {
	next slog.Handler
	mu   sync.Mutex
	// mu guards the following.
	recs []slog.Record
}

// NewLogRecorder returns a recorder and a logger writing to it.
func NewLogRecorder(t testing.TB) (*LogRecorder, *slog.Logger) {
	r := &LogRecorder{next: Logger(t).Handler()}
	return r, slog.New(r)
}

// Enabled implements slog.Handler: every level is recorded.
func (r *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (r *LogRecorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec.Clone())
	r.mu.Unlock()
	return r.next.Handle(ctx, rec)
}

// WithAttrs implements slog.Handler; the attributes are not recorded.
func (r *LogRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup implements slog.Handler; the group is not recorded.
func (r *LogRecorder) WithGroup(string) slog.Handler { return r }

// Count returns how many records at level have a message containing s.
func (r *LogRecorder) Count(level slog.Level, s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level && strings.Contains(rec.Message, s) {
			n++
		}
	}
	return n
}

// Pattern returns n bytes starting from seed, so that a lost or shifted
// range shows.
func Pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i) + byte(i>>8)
	}
	return b
}

// PatternAfterEOF is a TCP target: it reads the whole request, then
// answers with a response whose size the request's first 4 bytes give
// (big endian), filled with Pattern seeded by the request's fifth byte,
// and closes.
func PatternAfterEOF(c *net.TCPConn) {
	req, err := io.ReadAll(c)
	if err != nil || len(req) < 5 {
		return
	}
	n := int(binary.BigEndian.Uint32(req))
	_, _ = c.Write(Pattern(req[4], n))
}

// Exchange opens a TCP tunnel stream to target through o (a PatternAfterEOF
// server on the device's side), asks for size bytes seeded with seed,
// half-closes and reads the whole answer. It returns the bytes received
// and an error when the tunnel failed or the answer differs.
func Exchange(ctx context.Context, o transport.Opener, target string, size int, seed byte) (int, error) {
	st, _, err := o.OpenStream(ctx, wire.MsgTCP, []byte(target))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	req := binary.BigEndian.AppendUint32(nil, uint32(size))
	req = append(req, seed)
	if _, err := st.Write(req); err != nil {
		return 0, err
	}
	if err := st.CloseWrite(); err != nil {
		return 0, err
	}
	got, err := io.ReadAll(st)
	if err != nil {
		return len(got), err
	}
	if len(got) != size {
		return len(got), fmt.Errorf("got %d bytes; want %d", len(got), size)
	}
	if !bytes.Equal(got, Pattern(seed, size)) {
		return len(got), errors.New("content differs")
	}
	return len(got), nil
}
