package transport

import (
	"slices"
	"sync"
	"time"
)

// fairLock is a mutual exclusion lock that passes itself to the goroutines
// waiting for it in the order they came. The frame layer's writers take
// it for every frame they write. With a sync.Mutex, a stream writing frame
// after frame takes the lock back before the writer it woke gets to run,
// and another stream's keystroke echo waits behind up to a millisecond of
// its frames (the mutex's own bound on unfairness); with this lock, behind
// at most the frames of the writers queued before it.
type fairLock struct {
	mu sync.Mutex
	// mu guards the following.
	held    bool
	waiters []chan struct{} // in arrival order; each gets the lock by a send
}

// turns holds the channels that waiters receive the lock on.
var turns = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

// Lock waits for the lock, in turn.
func (l *fairLock) Lock() {
	l.mu.Lock()
	if !l.held {
		l.held = true
		l.mu.Unlock()
		return
	}
	turn := turns.Get().(chan struct{})
	l.waiters = append(l.waiters, turn)
	l.mu.Unlock()
	<-turn // the lock is ours, still held
	turns.Put(turn)
}

// lockOr is Lock for a waiter that may give up. It calls wait before it
// waits and again each time a channel that wait returned fires: wait
// returns what should wake the waiter to look again, or false to give up,
// and then lockOr returns false without the lock and without a place in
// the line. A waiter that never has to wait never calls wait.
func (l *fairLock) lockOr(wait func() (wake <-chan struct{}, expired <-chan time.Time, ok bool)) bool {
	l.mu.Lock()
	if !l.held {
		l.held = true
		l.mu.Unlock()
		return true
	}
	turn := turns.Get().(chan struct{})
	l.waiters = append(l.waiters, turn)
	l.mu.Unlock()
	for {
		wake, expired, ok := wait()
		if !ok {
			break
		}
		select {
		case <-turn:
			turns.Put(turn)
			return true
		case <-wake:
		case <-expired:
		}
	}
	l.mu.Lock()
	if i := slices.Index(l.waiters, turn); i >= 0 {
		l.waiters = slices.Delete(l.waiters, i, i+1)
		l.mu.Unlock()
		turns.Put(turn)
		return false
	}
	l.mu.Unlock()
	// The lock came to this waiter while it gave up: pass it on.
	<-turn
	turns.Put(turn)
	l.Unlock()
	return false
}

// Unlock hands the lock to the first waiter, or frees it.
func (l *fairLock) Unlock() {
	l.mu.Lock()
	if len(l.waiters) == 0 {
		l.held = false
		l.mu.Unlock()
		return
	}
	turn := l.waiters[0]
	l.waiters[0] = nil
	l.waiters = l.waiters[1:]
	if len(l.waiters) == 0 {
		l.waiters = l.waiters[:0:0] // let the backing array go once drained
	}
	l.mu.Unlock()
	turn <- struct{}{}
}
