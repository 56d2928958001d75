package transport

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFairLockServesInOrder: goroutines that wait for the lock get it in
// the order they came, each once the one before unlocked.
func TestFairLockServesInOrder(t *testing.T) {
	var (
		l     fairLock
		order []int
		wg    sync.WaitGroup
	)
	waiting := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.waiters)
	}
	l.Lock()
	for i := range 8 {
		wg.Go(func() {
			l.Lock()
			order = append(order, i) // under l
			l.Unlock()
		})
		require.Eventually(t, func() bool { return waiting() == i+1 }, 20*time.Second, time.Millisecond)
	}
	l.Unlock()
	wg.Wait()
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, order)

	// Free again: a Lock takes it at once.
	l.Lock()
	require.Zero(t, waiting())
	l.Unlock()
	require.False(t, l.held)
}
