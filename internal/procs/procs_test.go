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
