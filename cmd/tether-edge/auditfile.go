package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// auditFile is the audit log file, reopened on SIGHUP so that log rotation
// (rename, then SIGHUP) starts a new file. It may be a named pipe (FIFO)
// read by a log shipper.
//
// Its writer (the edge's audit writer) may block for as long as a pipe's
// reader stalls, so no lock is held across a write: reopen and Close never
// wait for a stuck write, and the write they interrupt goes on in the new
// file. SetWriteDeadline lets the audit writer give up on a stuck write.
type auditFile struct {
	path string

	mu sync.Mutex
	// mu guards the following.
	f        *os.File
	deadline time.Time // the write deadline, set on every file opened
	closed   bool
}

func openAuditFile(path string) (*auditFile, error) {
	a := &auditFile{path: path}
	if err := a.reopen(); err != nil {
		return nil, err
	}
	return a, nil
}

// reopen opens path again and makes it the file written. O_NONBLOCK keeps
// the open of a FIFO without a reader from blocking (it fails instead) and
// lets writes to a pipe wait in the runtime's poller, where a deadline or
// Close ends them; it changes nothing for a regular file.
func (a *auditFile) reopen() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ENXIO) {
		return fmt.Errorf("open the audit log %s: it is a named pipe with no reader; start the program that reads it first", a.path)
	}
	if err != nil {
		return fmt.Errorf("open the audit log %s: %w", a.path, err)
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		f.Close()
		return fmt.Errorf("open the audit log %s: %w", a.path, os.ErrClosed)
	}
	old := a.f
	a.f = f
	if !a.deadline.IsZero() {
		_ = f.SetWriteDeadline(a.deadline)
	}
	a.mu.Unlock()
	if old != nil {
		old.Close() // ends a write blocked on it: it goes on in f
	}
	return nil
}

func (a *auditFile) current() (*os.File, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f, a.closed
}

// Write writes p to the current file. If reopen closed the file under a
// write, the rest of p goes to the new one.
func (a *auditFile) Write(p []byte) (int, error) {
	written := 0
	for {
		f, closed := a.current()
		if closed {
			return written, os.ErrClosed
		}
		n, err := f.Write(p[written:])
		written += n
		if err == nil || !errors.Is(err, os.ErrClosed) {
			return written, err
		}
		if now, _ := a.current(); now == f {
			return written, err
		}
	}
}

// SetWriteDeadline bounds the write under way and those that follow.
func (a *auditFile) SetWriteDeadline(t time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deadline = t
	return a.f.SetWriteDeadline(t)
}

func (a *auditFile) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	return a.f.Close()
}
