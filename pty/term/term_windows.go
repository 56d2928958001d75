//go:build windows

package term

import (
	"context"
	"os"

	"golang.org/x/sys/windows"
	xterm "golang.org/x/term"
)

// size reads the size of the console fd. Only an output handle has one, so
// when fd is the input handle the size of stdout, else stderr, is read.
func size(fd int) (cols, rows int, err error) {
	cols, rows, err = xterm.GetSize(fd)
	if err == nil {
		return cols, rows, nil
	}
	for _, f := range []*os.File{os.Stdout, os.Stderr} {
		if c, r, e := xterm.GetSize(int(f.Fd())); e == nil {
			return c, r, nil
		}
	}
	return 0, 0, err
}

// prepareOutput turns on escape-sequence processing on the console behind
// stdout (Windows 10 and later), so that the colours and cursor movements
// of the remote terminal render, and returns a function that puts the
// previous mode back. Output that is not a console is left alone.
func prepareOutput() (restore func()) {
	h := windows.Handle(os.Stdout.Fd())
	var mode uint32
	if windows.GetConsoleMode(h, &mode) != nil {
		return func() {}
	}
	want := mode | windows.ENABLE_PROCESSED_OUTPUT | windows.ENABLE_VIRTUAL_TERMINAL_PROCESSING | windows.DISABLE_NEWLINE_AUTO_RETURN
	if want == mode || windows.SetConsoleMode(h, want) != nil {
		return func() {}
	}
	return func() { _ = windows.SetConsoleMode(h, mode) }
}

// WatchResize calls fn with the new size of the console fd whenever it
// differs from the last one seen, until ctx ends or stop is called. The
// console sends no signal on a resize, so the size is read every
// ResizePollInterval. fn runs on one goroutine, one call at a time. stop is
// idempotent and returns once the watcher (and its ticker) has stopped and
// no call of fn is running.
func WatchResize(ctx context.Context, fd int, fn func(cols, rows int)) (stop func()) {
	return pollResize(ctx, ResizePollInterval, func() (int, int, error) { return size(fd) }, fn)
}
