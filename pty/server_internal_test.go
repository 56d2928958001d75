//go:build linux

package pty

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/transport/wire"
)

func TestExitStatusesAreRememberedForAMinute(t *testing.T) {
	s := &Server{Config: Config{Enabled: true}}
	s.init()
	defer s.Close()
	s.recordExit("a", wire.ExitStatus{Exited: true, Code: 1})
	s.recordExit("b", wire.ExitStatus{Exited: true, Code: 2})

	b, err := s.status("a")
	require.NoError(t, err)
	require.JSONEq(t, `{"exited":true,"code":1,"signal":""}`, string(b))

	// Age "a" past the memory; "b" stays just inside it.
	s.mu.Lock()
	s.exited["a"] = exitRecord{status: s.exited["a"].status, at: time.Now().Add(-exitMemory - time.Second)}
	s.exited["b"] = exitRecord{status: s.exited["b"].status, at: time.Now().Add(-exitMemory + 10*time.Second)}
	s.mu.Unlock()

	_, err = s.status("a")
	require.ErrorIs(t, err, ErrUnknownSession)
	b, err = s.status("b")
	require.NoError(t, err)
	require.JSONEq(t, `{"exited":true,"code":2,"signal":""}`, string(b))
	require.ErrorIs(t, s.resize("b", 80, 24), ErrSessionEnded)
}

func TestExitStatusMemoryIsBounded(t *testing.T) {
	var s Server
	s.init()
	defer s.Close()
	for i := range maxExited + 10 {
		s.recordExit(fmt.Sprint(i), wire.ExitStatus{Exited: true})
	}
	s.mu.Lock()
	require.Len(t, s.exited, maxExited)
	require.Len(t, s.order, maxExited)
	s.mu.Unlock()
	_, err := s.status("0")
	require.True(t, errors.Is(err, ErrUnknownSession), "the oldest status should be gone")
	_, err = s.status(fmt.Sprint(maxExited + 9))
	require.NoError(t, err)
}

func TestExitStatusOfSignals(t *testing.T) {
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 255}, exitStatus(nil))
}
