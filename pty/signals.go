//go:build !windows

package pty

import (
	"os"
	"os/signal"
	"syscall"
)

// sessionSignals are the signals a terminal session relies on: ^C and ^\
// (SIGINT, SIGQUIT), the hang-up that ends a session (SIGHUP) and the end
// of a pipe (SIGPIPE).
var sessionSignals = []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGPIPE}

// ignoredSignals receives the session signals that the process ignores;
// nobody reads it, so they stay ignored (a full channel drops them).
var ignoredSignals = make(chan os.Signal, 1)

// defaultSessionSignals makes sure the children started from now on begin
// with the default disposition of every session signal.
//
// A child inherits the signals its parent ignores (SIG_IGN survives exec),
// and the Go runtime keeps SIG_IGN for SIGHUP and SIGINT when the process
// started with them ignored (as a job started with '&' from a script
// does) and for every signal passed to signal.Ignore. Then a shell's ^C
// never interrupts a command. The runtime resets the signals it handles
// itself to their defaults in every child it starts, so a session signal
// that is ignored is handed to the runtime here, on a channel nobody
// reads: the process goes on ignoring it, and its children do not.
func defaultSessionSignals() {
	for _, sig := range sessionSignals {
		if signal.Ignored(sig) {
			signal.Notify(ignoredSignals, sig)
		}
	}
}
