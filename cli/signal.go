package cli

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// SignalError is the cause main gives the context passed to Main when a
// signal ends the command, so that commands can tell Ctrl-C (SIGINT) and
// SIGTERM, which exit 130, from SIGHUP, after which tether nc exits 0 (ssh
// hangs up on its ProxyCommand after every session). errors.Is(err,
// context.Canceled) is true.
type SignalError struct {
	Signal os.Signal
}

func (e *SignalError) Error() string { return e.Signal.String() + " signal received" }

// Is makes errors.Is(err, context.Canceled) true.
func (e *SignalError) Is(target error) bool { return target == context.Canceled }

// hungUp reports whether ctx ended because of SIGHUP.
func hungUp(ctx context.Context) bool {
	var se *SignalError
	return errors.As(context.Cause(ctx), &se) && se.Signal == syscall.SIGHUP
}
