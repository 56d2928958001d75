//go:build !unix

package procs

import "time"

// cpuTime cannot read the process's CPU time here: the governor stays off.
func cpuTime() (time.Duration, bool) { return 0, false }
