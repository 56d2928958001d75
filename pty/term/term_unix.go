//go:build !windows

package term

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"

	xterm "golang.org/x/term"
)

func size(fd int) (cols, rows int, err error) { return xterm.GetSize(fd) }

// prepareOutput has nothing to do on a Unix terminal.
func prepareOutput() (restore func()) { return func() {} }

// WatchResize calls fn with the new size of the terminal fd whenever the
// process receives SIGWINCH and the size differs from the last one seen,
// until ctx ends or stop is called. fn runs on one goroutine, one call at a
// time. stop is idempotent and returns once the watcher has exited and no
// call of fn is running.
func WatchResize(ctx context.Context, fd int, fn func(cols, rows int)) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGWINCH)
	stopWatch := watchSizes(ctx, sigs, func() (int, int, error) { return size(fd) }, fn)
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			stopWatch()
		})
	}
}
