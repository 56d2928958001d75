package workers_test

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/internal/workers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// goid is the ID of the calling goroutine, from its stack's header.
func goid() int {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return id
}

// waitingForAJob reports whether goroutine id is a pool's goroutine
// waiting for its next job.
func waitingForAJob(id int) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.HasPrefix(g, []byte("goroutine "+strconv.Itoa(id)+" [select")) {
			return bytes.Contains(g, []byte("workers.(*Pool[...]).work("))
		}
	}
	return false
}

// TestPoolReusesItsGoroutines: jobs given one after another run on the
// goroutine that ran the one before; jobs at the same time each get one of
// their own; Close waits for the jobs under way.
func TestPoolReusesItsGoroutines(t *testing.T) {
	var (
		mu   sync.Mutex
		ran  = map[int]int{} // goroutine ID -> jobs it ran
		hold = make(chan struct{})
		done = make(chan int, 16)
	)
	p := &workers.Pool[int]{Idle: time.Hour, Run: func(job int) {
		mu.Lock()
		ran[goid()]++
		mu.Unlock()
		if job < 0 {
			<-hold
		}
		done <- job
	}}
	// A job sends done before it returns: its goroutine takes the next
	// one once it is back in line.
	idle := func() {
		mu.Lock()
		var last int
		for id := range ran {
			last = id
		}
		mu.Unlock()
		require.Eventually(t, func() bool { return waitingForAJob(last) }, 20*time.Second, time.Millisecond)
	}
	for i := range 20 {
		if i > 0 {
			idle()
		}
		p.Go(i)
		require.Equal(t, i, <-done)
	}
	require.Len(t, ran, 1, "jobs one after another ran on more than one goroutine")

	idle()
	for i := range 5 {
		p.Go(-1 - i)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, k := range ran {
			n += k
		}
		return n == 25
	}, 20*time.Second, time.Millisecond)
	mu.Lock()
	require.Len(t, ran, 5, "five jobs at once ran on other than five goroutines, the first one's among them")
	mu.Unlock()

	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned with jobs under way")
	case <-time.After(50 * time.Millisecond):
	}
	close(hold)
	<-closed
	require.Len(t, done, 5)
	p.Close() // again: nothing to do
}

// TestPoolGoroutinesEndWhenIdle: a goroutine with no job for Idle ends,
// and the next job starts another.
func TestPoolGoroutinesEndWhenIdle(t *testing.T) {
	done := make(chan int, 1)
	p := &workers.Pool[int]{Idle: 20 * time.Millisecond, Run: func(job int) { done <- goid() }}
	defer p.Close()
	p.Go(1)
	first := <-done
	alive := func(id int) bool {
		b := make([]byte, 1<<20)
		b = b[:runtime.Stack(b, true)]
		return bytes.Contains(b, []byte("goroutine "+strconv.Itoa(id)+" ["))
	}
	require.Eventually(t, func() bool { return !alive(first) }, 20*time.Second, time.Millisecond,
		"an idle goroutine did not end")
	p.Go(2)
	require.NotEqual(t, first, <-done)
}
