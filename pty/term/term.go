// Package term holds the terminal helpers of the CLI side of a shell
// session: raw mode with a guaranteed restore, the window size and a
// SIGWINCH watcher. It is apart from package pty so that the client links
// none of the device-side session code.
package term

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	xterm "golang.org/x/term"
)

// IsTerminal reports whether fd refers to a terminal. When stdin is not
// one, the CLI runs in pipe mode (no raw mode).
func IsTerminal(fd int) bool { return xterm.IsTerminal(fd) }

// Size returns the window size of the terminal fd.
func Size(fd int) (cols, rows int, err error) {
	cols, rows, err = xterm.GetSize(fd)
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
func MakeRaw(fd int) (restore func() error, err error) {
	old, err := xterm.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("term: put the terminal in raw mode: %w", err)
	}
	var (
		once sync.Once
		rerr error
	)
	return func() error {
		once.Do(func() {
			if e := xterm.Restore(fd, old); e != nil {
				rerr = fmt.Errorf("term: restore the terminal (run \"stty sane\" to repair it): %w", e)
			}
		})
		return rerr
	}, nil
}

// WatchResize calls fn with the new size of the terminal fd whenever the
// process receives SIGWINCH and the size differs from the last one seen,
// until ctx ends or stop is called. fn runs on one goroutine, one call at a
// time. stop is idempotent and returns once the watcher has exited and no
// call of fn is running.
func WatchResize(ctx context.Context, fd int, fn func(cols, rows int)) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGWINCH)
	stopWatch := watchResize(ctx, fd, sigs, fn)
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			stopWatch()
		})
	}
}

// watchResize is WatchResize with the signal channel given.
func watchResize(ctx context.Context, fd int, sigs <-chan os.Signal, fn func(cols, rows int)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	lastCols, lastRows, _ := xterm.GetSize(fd)
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigs:
			}
			cols, rows, err := xterm.GetSize(fd)
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
