package term

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeSize is a size func whose answers the test sets; it counts reads.
type fakeSize struct {
	mu         sync.Mutex
	cols, rows int
	err        error
	reads      int
}

func (f *fakeSize) set(cols, rows int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cols, f.rows, f.err = cols, rows, err
}

func (f *fakeSize) size() (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.cols, f.rows, f.err
}

func (f *fakeSize) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// waitReads waits until the watcher has read the size n more times, so
// that what the test set has surely been seen.
func (f *fakeSize) waitReads(t *testing.T, n int) {
	t.Helper()
	start := f.readCount()
	require.Eventually(t, func() bool { return f.readCount() >= start+n }, 30*time.Second, time.Millisecond,
		"the poller stopped reading the size")
}

// TestPollResize drives the poller used where the terminal sends no signal
// on a resize (the Windows console): fn gets each new size once, an
// unchanged size or one that cannot be read is not reported, and after
// stop no call of fn happens.
func TestPollResize(t *testing.T) {
	fs := &fakeSize{cols: 80, rows: 24}
	var (
		mu  sync.Mutex
		got [][2]int
	)
	calls := func() [][2]int {
		mu.Lock()
		defer mu.Unlock()
		return append([][2]int(nil), got...)
	}
	stop := pollResize(context.Background(), time.Millisecond, fs.size, func(cols, rows int) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, [2]int{cols, rows})
	})

	fs.waitReads(t, 3)
	require.Empty(t, calls(), "the starting size is not a resize")

	fs.set(120, 40, nil)
	fs.waitReads(t, 3)
	require.Equal(t, [][2]int{{120, 40}}, calls(), "a new size is reported once")

	fs.set(0, 0, errors.New("console gone"))
	fs.waitReads(t, 3)
	require.Equal(t, [][2]int{{120, 40}}, calls(), "a failed read is skipped")

	fs.set(120, 40, nil)
	fs.waitReads(t, 3)
	require.Equal(t, [][2]int{{120, 40}}, calls(), "the size after a failed read is compared with the last one reported")

	fs.set(60, 20, nil)
	fs.waitReads(t, 3)
	require.Equal(t, [][2]int{{120, 40}, {60, 20}}, calls())

	stop()
	stop() // idempotent
	fs.set(100, 30, nil)
	reads := fs.readCount()
	time.Sleep(20 * time.Millisecond) // twenty ticks, were the ticker still running
	require.Equal(t, reads, fs.readCount(), "no read after stop")
	require.Equal(t, [][2]int{{120, 40}, {60, 20}}, calls(), "no call after stop")
}

// TestPollResizeContext shows that the poller also ends with its context.
func TestPollResizeContext(t *testing.T) {
	fs := &fakeSize{cols: 80, rows: 24}
	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan struct{}, 1)
	stop := pollResize(ctx, time.Millisecond, fs.size, func(int, int) { called <- struct{}{} })
	defer stop()
	fs.set(81, 24, nil)
	select {
	case <-called:
	case <-time.After(30 * time.Second):
		t.Fatal("no resize reported")
	}
	cancel()
	stop() // returns: the watcher exited with its context
	reads := fs.readCount()
	fs.set(90, 30, nil)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, reads, fs.readCount(), "no read after the context ended")
}
