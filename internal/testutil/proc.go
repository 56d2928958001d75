package testutil

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Buffer is a bytes.Buffer safe for a process writing and a test reading.
type Buffer struct {
	mu sync.Mutex
	// mu guards the following.
	b bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// DefaultStopTimeout is how long Stop waits after SIGTERM when
// Options.StopTimeout is zero.
const DefaultStopTimeout = 15 * time.Second

// Options changes how StartWith runs a binary. The zero value is what
// Start does.
type Options struct {
	// Env is the whole environment of the process; nil means this
	// process's environment.
	Env []string
	// Stdin keeps a pipe to the process's stdin in Proc.Stdin; otherwise
	// stdin is empty.
	Stdin bool
	// SplitOutput keeps stdout and stderr apart (Proc.Stdout, Proc.Stderr);
	// otherwise both go, interleaved, to one buffer.
	SplitOutput bool
	// StopTimeout is how long Stop waits after SIGTERM before it kills the
	// process group. Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// KillAtCleanup ends a process still running at the end of the test
	// with SIGKILL at once, instead of with Stop.
	KillAtCleanup bool
}

// Proc is a binary running as a child process in its own process group.
// It ends at the end of the test, and its output is logged if the test
// failed.
type Proc struct {
	// Cmd is the running command. Signal it through Cmd.Process; never
	// call Cmd.Wait.
	Cmd *exec.Cmd
	// Stdin is the pipe to the process's stdin with Options.Stdin, or nil.
	Stdin io.WriteCloser

	stdout, stderr *Buffer // the same buffer unless Options.SplitOutput
	stopTimeout    time.Duration
	done           chan struct{}
	err            error // set before done is closed
}

// Start runs the binary at path with args, stdout and stderr in one
// buffer. At the end of the test it is stopped: SIGTERM, then SIGKILL to
// its process group if it lingers.
func Start(tb testing.TB, path string, args ...string) *Proc {
	tb.Helper()
	return StartWith(tb, Options{}, path, args...)
}

// StartWith is Start with options.
func StartWith(tb testing.TB, o Options, path string, args ...string) *Proc {
	tb.Helper()
	p := &Proc{stdout: &Buffer{}, stopTimeout: o.StopTimeout, done: make(chan struct{})}
	if p.stopTimeout == 0 {
		p.stopTimeout = DefaultStopTimeout
	}
	p.stderr = p.stdout
	if o.SplitOutput {
		p.stderr = &Buffer{}
	}
	p.Cmd = exec.Command(path, args...)
	p.Cmd.Env = o.Env
	p.Cmd.Stdout, p.Cmd.Stderr = p.stdout, p.stderr
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.Stdin {
		w, err := p.Cmd.StdinPipe()
		require.NoError(tb, err)
		p.Stdin = w
	}
	require.NoError(tb, p.Cmd.Start(), "start %s", path)
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		if o.KillAtCleanup {
			p.Kill9()
		} else {
			_ = p.Stop()
		}
		if tb.Failed() {
			tb.Logf("--- %s %s\n%s", filepath.Base(path), strings.Join(args, " "), p.report())
		}
	})
	return p
}

func (p *Proc) report() string {
	if p.stderr == p.stdout {
		return "output:\n" + p.stdout.String()
	}
	return "stdout:\n" + p.stdout.String() + "\nstderr:\n" + p.stderr.String()
}

// Stop sends SIGTERM, waits for the exit (Options.StopTimeout), then
// kills the process group. It returns the error of the exit, as
// exec.Cmd.Wait does.
func (p *Proc) Stop() error {
	if p.Exited() {
		return p.err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.stopTimeout):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// Kill9 kills the process group without a chance to clean up, and waits
// for the exit.
func (p *Proc) Kill9() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Wait waits up to d for the process to exit and returns the error of the
// exit; the test fails if it is still running then.
func (p *Proc) Wait(tb testing.TB, d time.Duration) error {
	tb.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		tb.Fatalf("%s did not exit within %v\n%s", filepath.Base(p.Cmd.Path), d, p.report())
		return nil
	}
}

// Output returns what the process printed so far: stdout and stderr
// interleaved, or with Options.SplitOutput stdout then stderr.
func (p *Proc) Output() string {
	if p.stderr == p.stdout {
		return p.stdout.String()
	}
	return p.stdout.String() + p.stderr.String()
}

// Stdout returns what the process wrote to stdout so far (all of its
// output without Options.SplitOutput).
func (p *Proc) Stdout() string { return p.stdout.String() }

// Stderr returns what the process wrote to stderr so far (all of its
// output without Options.SplitOutput).
func (p *Proc) Stderr() string { return p.stderr.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err waits for the exit and returns its error, as exec.Cmd.Wait does.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// ExitCode waits for the exit and returns the exit code: -1 if a signal
// ended the process or it could not be waited for.
func (p *Proc) ExitCode() int {
	err := p.Err()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		return -1
	}
}

// Pid is the process id, which is also its process group id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }
