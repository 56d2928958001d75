package transport

import "sync"

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
