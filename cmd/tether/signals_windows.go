//go:build windows

package main

import (
	"os"
	"syscall"
)

// stopSignals end the command: Ctrl+C and Ctrl+Break (os.Interrupt), and
// the console window closing, the user logging off or the system shutting
// down, which Go delivers as SIGTERM on Windows.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// pipeSignals: Windows has no SIGPIPE; a write to a closed pipe fails.
var pipeSignals []os.Signal
