package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// reloader runs reloads one at a time and coalesces requests: a request
// made while a run is in progress is served by the next run, and all the
// requests made during one run share that next run. trigger never blocks.
type reloader struct {
	run func(context.Context) error

	mu sync.Mutex
	// mu guards the following.
	running bool
	next    *reloadResult // the requests waiting for the next run
	queued  int           // how many requests share next
	closed  bool

	wg sync.WaitGroup // the run loop
}

// reloadResult is the outcome of one run; err is set before done closes.
type reloadResult struct {
	done chan struct{}
	err  error
}

// trigger asks for a reload and returns the result of the run that will
// serve it.
func (r *reloader) trigger(ctx context.Context) *reloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		res := &reloadResult{done: make(chan struct{}), err: ErrAgentClosed}
		close(res.done)
		return res
	}
	if r.next == nil {
		r.next = &reloadResult{done: make(chan struct{})}
		r.queued = 0
	}
	r.queued++
	res := r.next
	if !r.running {
		r.running = true
		r.wg.Add(1)
		go r.loop(ctx)
	}
	return res
}

// loop runs reloads while requests wait, then exits.
func (r *reloader) loop(ctx context.Context) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		res := r.next
		r.next, r.queued = nil, 0
		if res == nil {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		res.err = r.run(ctx)
		close(res.done)
	}
}

// waiting returns how many requests wait for the next run.
func (r *reloader) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queued
}

// close refuses new requests and waits for the run in progress (whose
// context the owner has ended).
func (r *reloader) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
}

// maxTail bounds the stderr kept from a reload command.
const maxTail = 512

// tailBuffer keeps the last maxTail bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= maxTail {
		b.buf = append(b.buf[:0], p[len(p)-maxTail:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - maxTail; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// String returns the tail on one line, valid UTF-8.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(strings.ToValidUTF8(string(b.buf), ""))
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

// runReloadCommand runs the reload command in its own process group, with
// stdin and stdout on /dev/null and stderr kept for the answer. On timeout
// or when ctx ends the whole group is killed.
func runReloadCommand(ctx context.Context, rc ReloadConfig, log *slog.Logger) error {
	timeout := rc.Timeout
	if timeout <= 0 {
		timeout = DefaultReloadTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, rc.Command[0], rc.Command[1:]...)
	var tail tailBuffer
	cmd.Stderr = &tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second // a grandchild holding stderr open must not hang the reload
	log.Info("running reload command", "command", rc.Command)
	err := cmd.Run()
	if err == nil || errors.Is(err, exec.ErrWaitDelay) {
		// ErrWaitDelay: the command exited 0, but something it started
		// kept stderr open; the reload itself succeeded.
		return nil
	}
	out := tail.String()
	suffix := ""
	if out != "" {
		suffix = ": " + out
	}
	var ee *exec.ExitError
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("command timed out after %v and was killed%s", timeout, suffix)
	case ctx.Err() != nil:
		return fmt.Errorf("command killed: the agent is shutting down%s", suffix)
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("command killed by signal %v%s", ws.Signal(), suffix)
		}
		if out == "" {
			return fmt.Errorf("command exited %d (nothing on stderr)", ee.ExitCode())
		}
		return fmt.Errorf("command exited %d%s", ee.ExitCode(), suffix)
	default:
		return fmt.Errorf("command %q could not run: %v; check reload.command in the agent's config", rc.Command[0], err)
	}
}
