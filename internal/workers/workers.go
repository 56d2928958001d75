// Package workers runs short jobs, such as the handlers of a session's
// streams, on goroutines that take the next job once one ends.
package workers

import (
	"sync"
	"time"
)

// DefaultIdle is how long a goroutine of a Pool waits for its next job
// unless the Pool says otherwise.
const DefaultIdle = 5 * time.Second

// Pool runs each job given to Go on a goroutine that finished an earlier
// job and is waiting for the next, or else on a new one. A goroutine that
// runs one job after another keeps the stack the earlier ones grew (until
// a GC shrinks it), where a goroutine of its own per job starts small and
// copies its stack as it grows, on every job: on a session's stream
// opens, about a twentieth of each process's CPU time.
//
// The zero Pool needs only Run. Go and Close are not to be called at the
// same time, nor Go after Close; Close is idempotent.
type Pool[T any] struct {
	// Run runs one job. Required.
	Run func(T)
	// Idle is how long a goroutine waits for its next job before it
	// ends; zero means DefaultIdle.
	Idle time.Duration

	init   sync.Once
	closed sync.Once
	wait   chan T // to a goroutine waiting for its next job; closed by Close
	wg     sync.WaitGroup
}

func (p *Pool[T]) start() { p.init.Do(func() { p.wait = make(chan T) }) }

// Go runs job.
func (p *Pool[T]) Go(job T) {
	p.start()
	select {
	case p.wait <- job:
	default:
		p.wg.Add(1)
		go p.work(job)
	}
}

// Close ends the goroutines waiting for a job, and waits for those
// running one to finish it and end.
func (p *Pool[T]) Close() {
	p.start()
	p.closed.Do(func() { close(p.wait) })
	p.wg.Wait()
}

func (p *Pool[T]) work(job T) {
	defer p.wg.Done()
	idle := p.Idle
	if idle <= 0 {
		idle = DefaultIdle
	}
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		p.Run(job)
		t.Reset(idle)
		var ok bool
		select {
		case job, ok = <-p.wait:
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}
