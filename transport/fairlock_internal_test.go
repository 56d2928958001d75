package transport

import (
	"context"
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
	l.Lock()
	for i := range 8 {
		wg.Go(func() {
			l.Lock()
			order = append(order, i) // under l
			l.Unlock()
		})
		require.Eventually(t, func() bool { return l.waiting() == i+1 }, 20*time.Second, time.Millisecond)
	}
	l.Unlock()
	wg.Wait()
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, order)

	// Free again: a Lock takes it at once.
	l.Lock()
	require.Zero(t, l.waiting())
	l.Unlock()
	require.False(t, l.held)
}

// TestFairLockWaitersMayGiveUp: a waiter that gives up leaves the line
// and holds nothing; those behind it keep their order; and a waiter that
// gives up just as the lock comes to it passes the lock on. Under -race,
// many waiters that give up at random never hold the lock two at a time
// and never leave it held.
func TestFairLockWaitersMayGiveUp(t *testing.T) {
	var (
		l     fairLock
		order []int
		wg    sync.WaitGroup
	)
	never := func() (<-chan struct{}, <-chan time.Time, bool) { return nil, nil, true }
	l.Lock()
	giveUp := make(chan struct{})
	gaveUp := make(chan bool, 1)
	for i := range 4 {
		if i == 1 {
			wg.Go(func() {
				gaveUp <- !l.lockOr(func() (<-chan struct{}, <-chan time.Time, bool) {
					select {
					case <-giveUp:
						return nil, nil, false
					default:
						return giveUp, nil, true
					}
				})
			})
		} else {
			wg.Go(func() {
				require.True(t, l.lockOr(never))
				order = append(order, i) // under l
				l.Unlock()
			})
		}
		require.Eventually(t, func() bool { return l.waiting() == i+1 }, 20*time.Second, time.Millisecond)
	}
	close(giveUp)
	require.True(t, <-gaveUp)
	require.Equal(t, 3, l.waiting(), "the waiter that gave up is still in line")
	l.Unlock()
	wg.Wait()
	require.Equal(t, []int{0, 2, 3}, order)
	require.False(t, l.held)

	// The lock comes to a waiter as it gives up: the next one gets it.
	l.Lock()
	inWait, proceed := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		gaveUp <- !l.lockOr(func() (<-chan struct{}, <-chan time.Time, bool) {
			close(inWait)
			<-proceed
			return nil, nil, false
		})
	})
	<-inWait
	next := make(chan struct{})
	wg.Go(func() {
		require.True(t, l.lockOr(never))
		close(next)
		l.Unlock()
	})
	require.Eventually(t, func() bool { return l.waiting() == 2 }, 20*time.Second, time.Millisecond)
	l.Unlock() // to the waiter that is giving up
	close(proceed)
	require.True(t, <-gaveUp)
	<-next
	wg.Wait()
	require.False(t, l.held)

	var inside, most int
	var mu sync.Mutex
	for i := range 64 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%8)*50*time.Microsecond)
			defer cancel()
			ok := l.lockOr(func() (<-chan struct{}, <-chan time.Time, bool) {
				return ctx.Done(), nil, ctx.Err() == nil
			})
			if !ok {
				return
			}
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			time.Sleep(20 * time.Microsecond)
			mu.Lock()
			inside--
			mu.Unlock()
			l.Unlock()
		})
	}
	wg.Wait()
	require.Equal(t, 1, most)
	require.False(t, l.held, "a waiter that gave up left the lock held")
	require.Zero(t, l.waiting())
}

// waiting is how many goroutines wait for l.
func (l *fairLock) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}
