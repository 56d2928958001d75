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

// TestGovernorFollowsTheLoad: one busy interval moves the process to all
// Ps; only QuietFor of quiet intervals move it back, and a busy one in
// between starts the quiet over.
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
	require.Equal(t, stay, step(0.49))
	require.Equal(t, toAll, step(0.6), "a busy interval")
	require.Equal(t, stay, step(1.8))
	require.Equal(t, stay, step(0.3), "a light load is not quiet")
	quiet := int(QuietFor / Interval)
	for i := range quiet {
		require.Equal(t, stay, step(0.1), "quiet interval %d", i)
	}
	require.Equal(t, stay, step(0.25), "a light interval starts the quiet over")
	for i := range quiet {
		require.Equal(t, stay, step(0.05), "quiet interval %d", i)
	}
	require.Equal(t, toOne, step(0.05), "quiet for QuietFor")
	require.Equal(t, stay, step(0.1))
	require.Equal(t, toAll, step(1.0))
	// A clock that did not move changes nothing.
	require.Equal(t, stay, g.sample(cpu, at, false))

	// A Hold is busy, at once and however little CPU time it takes, and
	// the quiet starts only once it is released.
	for i := range quiet + 1 {
		require.NotEqual(t, toAll, step(0.01), "quiet interval %d", i)
	}
	require.True(t, g.one)
	require.Equal(t, toAll, g.sample(cpu, at, true), "a new Hold, the same instant")
	for i := range 2 * quiet {
		at = at.Add(Interval)
		require.Equal(t, stay, g.sample(cpu, at, true), "held interval %d", i)
	}
	for i := range quiet {
		require.Equal(t, stay, step(0.01), "quiet interval %d after the Hold", i)
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
	require.Equal(t, toAll, step(Interval), "a busy interval")
	require.Equal(t, Interval, g.wait)

	// On all Ps the wait stays Interval, quiet or not, to time QuietFor.
	for range int(QuietFor/Interval) + 1 {
		step(0)
		require.Equal(t, Interval, g.wait)
	}
	require.True(t, g.one, "quiet for QuietFor")
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
	// On a machine busy with other work (the suites of other packages
	// beside this one), the spinning goroutine gets less than a core, and
	// some intervals less than Busy: it is given longer to show.
	require.Eventually(t, func() bool { return runtime.GOMAXPROCS(0) == def }, 30*time.Second, 10*time.Millisecond,
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
