//go:build !windows

package main

import (
	"os"
	"syscall"
)

// stopSignals end the command: ^C (when the terminal is not raw), a kill,
// and the hang-up of the terminal it runs on.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// pipeSignals are caught so that a write to a closed pipe fails with EPIPE.
var pipeSignals = []os.Signal{syscall.SIGPIPE}
