// Package term holds the terminal helpers of the CLI side of a shell
// session: raw mode with a guaranteed restore, the window size and a
// resize watcher. It is apart from package pty so that the client links
// none of the device-side session code.
//
// It works on Linux, macOS and Windows. A Unix terminal reports a resize
// with SIGWINCH; the Windows console sends no signal, so there the size
// is polled (every ResizePollInterval).
package term

import (
	"context"
	"fmt"
	"sync"
	"time"

	xterm "golang.org/x/term"
)

// ResizePollInterval is how often WatchResize reads the window size where
// the terminal sends no signal on a resize (the Windows console).
const ResizePollInterval = 250 * time.Millisecond

// IsTerminal reports whether fd refers to a terminal. When stdin is not
// one, the CLI runs in pipe mode (no raw mode).
func IsTerminal(fd int) bool { return xterm.IsTerminal(fd) }

// Size returns the window size of the terminal fd. On Windows, where only
// a console's output handle has a size, fd may be the input handle: the
// size is then read from stdout or stderr.
func Size(fd int) (cols, rows int, err error) {
	cols, rows, err = size(fd)
	if err != nil {
		return 0, 0, fmt.Errorf("term: terminal size: %w", err)
	}
	return cols, rows, nil
}

// MakeRaw puts the terminal fd into raw mode (no echo, no line editing, no
// signals from keys: every key goes to the remote side) and returns restore,
// which puts the previous mode back. restore is idempotent and safe to call
// from several goroutines at once: defer it, and call it from the signal
// handler and before printing an error too. Only the first call restores;
// the others wait for it and return its result.
//
// On Windows, MakeRaw also turns on the console's escape-sequence
// processing for output, so that what the remote terminal draws renders,
// and restore turns it back to what it was.
func MakeRaw(fd int) (restore func() error, err error) {
	old, err := xterm.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("term: put the terminal in raw mode: %w", err)
	}
	restoreOutput := prepareOutput()
	var (
		once sync.Once
		rerr error
	)
	return func() error {
		once.Do(func() {
			restoreOutput()
			if e := xterm.Restore(fd, old); e != nil {
				rerr = fmt.Errorf("term: restore the terminal (run \"stty sane\" to repair it): %w", e)
			}
		})
		return rerr
	}, nil
}

// sizeFunc reads a terminal's window size.
type sizeFunc func() (cols, rows int, err error)

// watchSizes calls fn with the size that size reports after each tick,
// when it differs from the last one seen, until ctx ends or stop is
// called. A size that cannot be read is skipped. fn runs on one goroutine,
// one call at a time. stop returns once the watcher has exited and no call
// of fn is running.
func watchSizes[T any](ctx context.Context, ticks <-chan T, size sizeFunc, fn func(cols, rows int)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	lastCols, lastRows, _ := size()
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticks:
			}
			cols, rows, err := size()
			if err != nil || (cols == lastCols && rows == lastRows) {
				continue
			}
			lastCols, lastRows = cols, rows
			fn(cols, rows)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// pollResize is watchSizes on a ticker of the given interval, for
// terminals that send no signal on a resize. The ticker is stopped with
// the watcher; stop is idempotent.
func pollResize(ctx context.Context, interval time.Duration, size sizeFunc, fn func(cols, rows int)) (stop func()) {
	t := time.NewTicker(interval)
	stopWatch := watchSizes(ctx, t.C, size, fn)
	var once sync.Once
	return func() {
		once.Do(func() {
			stopWatch()
			t.Stop()
		})
	}
}
