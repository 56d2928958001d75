package procs

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestGovernorFollowsTheLoad: an interval that keeps the one P busy moves
// the process to all Ps; only FitsFor of intervals below Fits move it back,
// and one above it in between starts the count over.
func TestGovernorFollowsTheLoad(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := newGovernor(0, t0)
	cpu, at := time.Duration(0), t0
	step := func(cores float64) change {
		at = at.Add(Interval)
		cpu += time.Duration(cores * float64(Interval))
		return g.sample(cpu, at, false)
	}
	require.Equal(t, stay, step(0.3), "a light load stays on one P")
	require.Equal(t, stay, step(0.85), "a load that one P keeps up with")
	require.Equal(t, toAll, step(0.95), "an interval with the P busy")
	require.Equal(t, stay, step(1.8))
	require.Equal(t, stay, step(0.75), "a load that does not fit on one P")
	fits := int(FitsFor / Interval)
	for i := range fits {
		require.Equal(t, stay, step(0.5), "interval %d that fits", i)
	}
	require.Equal(t, stay, step(0.75), "an interval that does not fit starts the count over")
	for i := range fits {
		require.Equal(t, stay, step(0.05), "interval %d that fits", i)
	}
	require.Equal(t, toOne, step(0.05), "below Fits for FitsFor")
	require.Equal(t, stay, step(0.1))
	require.Equal(t, toAll, step(1.0))
	// A clock that did not move changes nothing.
	require.Equal(t, stay, g.sample(cpu, at, false))

	// A Hold is busy, at once and however little CPU time it takes, and
	// the count starts only once it is released.
	for i := range fits + 1 {
		require.NotEqual(t, toAll, step(0.01), "interval %d that fits", i)
	}
	require.True(t, g.one)
	require.Equal(t, toAll, g.sample(cpu, at, true), "a new Hold, the same instant")
	for i := range 2 * fits {
		at = at.Add(Interval)
		require.Equal(t, stay, g.sample(cpu, at, true), "held interval %d", i)
	}
	for i := range fits {
		require.Equal(t, stay, step(0.01), "interval %d that fits after the Hold", i)
	}
	require.Equal(t, toOne, step(0.01))
}

// TestGovernorSamplesAnIdleProcessLess: on one P, each sample that finds
// less CPU time than a calm Interval holds doubles the wait for the next
// one, up to IdleInterval; a sample that finds more, a busy process or a
// Hold brings it back to Interval.
func TestGovernorSamplesAnIdleProcessLess(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := newGovernor(0, t0)
	cpu, at := time.Duration(0), t0
	// step lets the governor's own wait pass, with used CPU time in it.
	step := func(used time.Duration) change {
		at = at.Add(g.wait)
		cpu += used
		return g.sample(cpu, at, false)
	}
	require.Equal(t, Interval, g.wait)
	want := Interval
	for want < IdleInterval {
		want = min(2*want, IdleInterval)
		require.Equal(t, stay, step(time.Millisecond))
		require.Equal(t, want, g.wait, "an idle sample doubles the wait")
	}
	require.Equal(t, stay, step(0))
	require.Equal(t, IdleInterval, g.wait, "the wait stops at IdleInterval")

	require.Equal(t, stay, step(idleUse), "some work, far from busy over a long wait")
	require.Equal(t, Interval, g.wait, "some work brings the wait back to Interval")
	require.Equal(t, stay, step(0))
	require.Equal(t, 2*Interval, g.wait)
	require.Equal(t, toAll, step(g.wait), "a busy interval")
	require.Equal(t, Interval, g.wait)

	// On all Ps the wait stays Interval, busy or not, to time FitsFor.
	for range int(FitsFor/Interval) + 1 {
		step(0)
		require.Equal(t, Interval, g.wait)
	}
	require.True(t, g.one, "below Fits for FitsFor")
	require.Equal(t, stay, step(0))
	require.Equal(t, 2*Interval, g.wait, "back on one P, an idle sample doubles the wait again")

	// A Hold samples at once and then every Interval.
	at = at.Add(time.Millisecond)
	require.Equal(t, toAll, g.sample(cpu, at, true))
	require.Equal(t, Interval, g.wait)
}

// TestStartFitsTheRuntime: with Start, an idle process runs on one P, a
// busy one on the runtime's default, and stop leaves the default.
func TestStartFitsTheRuntime(t *testing.T) {
	// A goroutine that spins keeps its P busy, but a machine busy with
	// other tests may not give it 90 % of a core.
	busyAt = 0.5
	defer func() { busyAt = Busy }()
	def := runtime.GOMAXPROCS(0)
	stop := Start(nil)
	defer stop()
	if _, ok := cpuTime(); !ok || def < 2 {
		// Nothing to fit: one P already, or no CPU time to go by.
		require.Equal(t, def, runtime.GOMAXPROCS(0))
		return
	}
	require.Eventually(t, func() bool { return runtime.GOMAXPROCS(0) == 1 }, 10*time.Second, 10*time.Millisecond,
		"an idle process stays on %d Ps", runtime.GOMAXPROCS(0))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for i := 0; i < 1e6; i++ {
				_ = i * i
			}
		}
	}()
	require.Eventually(t, func() bool { return runtime.GOMAXPROCS(0) == def }, 10*time.Second, 10*time.Millisecond,
		"a busy process stays on one P")
	cancel()
	<-done
	require.Eventually(t, func() bool { return runtime.GOMAXPROCS(0) == 1 }, 10*time.Second, 10*time.Millisecond,
		"a process quiet again stays on %d Ps", runtime.GOMAXPROCS(0))

	// A Hold, idle as it is, moves it to all Ps until it is released.
	release := Hold()
	require.Eventually(t, func() bool { return runtime.GOMAXPROCS(0) == def }, 10*time.Second, 10*time.Millisecond,
		"a Hold left the process on one P")
	release()
	release() // a second call does nothing
	require.Eventually(t, func() bool { return runtime.GOMAXPROCS(0) == 1 }, 10*time.Second, 10*time.Millisecond,
		"a released Hold left the process on %d Ps", runtime.GOMAXPROCS(0))
	require.Zero(t, holds.Load())
	stop()
	require.Equal(t, def, runtime.GOMAXPROCS(0), "stop did not leave the runtime's default")
}

// TestStartLeavesAChosenSetting: GOMAXPROCS in the environment stands.
func TestStartLeavesAChosenSetting(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	prev := runtime.GOMAXPROCS(3)
	defer runtime.GOMAXPROCS(prev)
	stop := Start(nil)
	defer stop()
	time.Sleep(3 * Interval)
	require.Equal(t, 3, runtime.GOMAXPROCS(0))
}
