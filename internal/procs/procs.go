// Package procs fits the number of Ps, the threads that run Go code at
// once (GOMAXPROCS), to what a Tether process is doing.
//
// A relay of small messages, a keystroke through the CLI, the edge and the
// agent, is a chain of goroutine hand-offs in each process: the session's
// receive loop, the splice, smux's shaper and send loop. With an idle P
// beside the running one, every hand-off wakes another thread, a context
// switch: on a 2-core machine a 64-byte round trip on a stream through the
// edge and the agent took 0.34 to 0.41 ms with both on all their Ps, and
// 0.27 to 0.29 ms governed (BenchmarkInteractiveAllProcs and
// BenchmarkInteractive in e2e). A busy process, on the other hand, needs
// every core, and not only for its encryption: one P saves a bulk stream
// through the edge and the agent a third of their CPU time per GB, but
// everything else on that P then waits behind it, and a shell's keystroke
// beside it took 3.6 to 6.3 ms instead of 1.2 to 1.7 (p50,
// BenchmarkShellKeystrokeUnderBulk with the switch at 90 % of a core). So
// a process runs on one P while it uses less than half a core, and on the
// runtime's default (every core the process may use) from the first
// interval in which it uses more, until it has been quiet for a while.
//
// An idle process is sampled less and less often, down to once per
// IdleInterval: a device agent that waits for work should not wake 20
// times a second to read its own CPU time (each wake-up also wakes the
// runtime's monitor thread, which then polls for a millisecond). The
// first sample that finds some work, 10 ms of CPU time, brings the
// interval back to 50 ms, so a bulk transfer that starts while the
// process idles reaches all Ps within about IdleInterval.
//
// Work that waits in system calls, file I/O above all, keeps the one P in
// them without showing as CPU time, and the rest of the process waits
// behind it: a file transfer holds all Ps for as long as it runs (Hold).
package procs

import (
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The governor's defaults.
const (
	// Interval is how often the process's CPU time is read.
	Interval = 50 * time.Millisecond
	// Busy is the share of a core, over one interval, past which the
	// process runs on all its Ps.
	Busy = 0.5
	// Calm is the share of a core below which the process is quiet.
	Calm = 0.2
	// QuietFor is how long the process stays quiet before it goes back
	// to one P.
	QuietFor = 2 * time.Second
	// IdleInterval is the longest time between samples, which the
	// interval doubles towards while the process is on one P and each
	// sample finds less CPU time than a calm Interval holds.
	IdleInterval = time.Second
)

// Start fits GOMAXPROCS to the process's load until stop is called, which
// waits for the governor's goroutine and leaves the runtime's default in
// place. It does nothing (and stop does nothing) when the runtime's
// default is one P, when the environment sets GOMAXPROCS (that choice
// stands), or where the process's CPU time cannot be read (cpuTime).
func Start(log *slog.Logger) (stop func()) {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) < 2 {
		return func() {}
	}
	if _, ok := cpuTime(); !ok {
		return func() {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		run(done, log)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// holds counts the Holds in force; held wakes the governor for a new one.
var (
	holds atomic.Int64
	held  = make(chan struct{}, 1)
)

// Hold keeps the process on all its Ps until release is called: for work
// that waits in system calls (a file transfer) and so uses little CPU time
// while it holds the only P. Where no governor runs, it only counts.
func Hold() (release func()) {
	if holds.Add(1) == 1 {
		select {
		case held <- struct{}{}:
		default:
		}
	}
	var once sync.Once
	return func() { once.Do(func() { holds.Add(-1) }) }
}

func run(done <-chan struct{}, log *slog.Logger) {
	t := time.NewTimer(Interval)
	defer t.Stop()
	cpu, _ := cpuTime()
	g := newGovernor(cpu, time.Now())
	runtime.GOMAXPROCS(1)
	defer runtime.SetDefaultGOMAXPROCS()
	for {
		var now time.Time
		select {
		case <-done:
			return
		case now = <-t.C:
		case <-held:
			now = time.Now()
		}
		cpu, ok := cpuTime()
		if !ok {
			return
		}
		switch g.sample(cpu, now, holds.Load() > 0) {
		case toAll:
			runtime.SetDefaultGOMAXPROCS()
			log.Debug("busy: running on all Ps", "procs", runtime.GOMAXPROCS(0))
		case toOne:
			runtime.GOMAXPROCS(1)
			log.Debug("quiet: running on one P")
		}
		// The next sample is g.wait after this one, whether the timer or
		// a new Hold woke the governor (Reset drops a pending expiry).
		t.Reset(g.wait)
	}
}

// change is what a sample asks of the runtime.
type change int

const (
	stay change = iota
	toAll
	toOne
)

// governor decides from the process's CPU time, sampled at intervals,
// when to run on one P and when on all.
type governor struct {
	one     bool // on one P
	lastCPU time.Duration
	lastAt  time.Time
	calm    time.Time     // since when the process is quiet; zero while it is not
	wait    time.Duration // until the next sample
}

// newGovernor starts on one P, from the CPU time cpu at time at.
func newGovernor(cpu time.Duration, at time.Time) *governor {
	return &governor{one: true, lastCPU: cpu, lastAt: at, wait: Interval}
}

// idleUse is the CPU time of an interval below which the process on one P
// counts as idle, and the sampling slows down: what a calm Interval holds.
const idleUse = time.Duration(Calm * float64(Interval))

// sample takes the process's CPU time at time at, and whether a Hold is in
// force, and returns the change it calls for; g.wait is then the time
// until the next sample.
func (g *governor) sample(cpu time.Duration, at time.Time, held bool) change {
	elapsed := at.Sub(g.lastAt)
	if elapsed <= 0 && !held {
		return stay
	}
	cores := 0.0
	used := time.Duration(0)
	if elapsed > 0 {
		used = cpu - g.lastCPU
		cores = float64(used) / float64(elapsed)
		g.lastCPU, g.lastAt = cpu, at
	}
	if held {
		cores = max(cores, Busy) // busy, whatever its CPU time
	}
	if g.one && !held && cores < Busy && used < idleUse {
		g.wait = min(2*g.wait, IdleInterval)
	} else {
		g.wait = Interval
	}
	switch {
	case g.one && cores >= Busy:
		g.one, g.calm = false, time.Time{}
		return toAll
	case g.one:
		return stay
	case cores >= Calm:
		g.calm = time.Time{}
	case g.calm.IsZero():
		g.calm = at
	case at.Sub(g.calm) >= QuietFor:
		g.one, g.calm = true, time.Time{}
		return toOne
	}
	return stay
}
