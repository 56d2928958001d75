package transport

import (
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// stuckConn is a socket whose peer stopped reading: a Write blocks until
// Close.
type stuckConn struct {
	net.Conn // nil: only Write and Close are used
	writing  chan struct{}
	closed   chan struct{}
	once     sync.Once
}

func newStuckConn() *stuckConn {
	return &stuckConn{writing: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (c *stuckConn) Write(p []byte) (int, error) {
	select {
	case c.writing <- struct{}{}:
	default:
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *stuckConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// TestAbortFlushEndsAStuckFlush: closing a connection whose gathered
// frame is stuck on the socket ends the flush at once.
func TestAbortFlushEndsAStuckFlush(t *testing.T) {
	sc := newStuckConn()
	rc := GatherRecords(sc).(*recordConn)
	rc.gather()
	_, err := rc.Write([]byte("a record"))
	require.NoError(t, err, "a gathered write does not reach the socket")
	done := make(chan error, 1)
	go func() { done <- rc.flush() }()
	<-sc.writing // the flush is stuck in the socket's write
	rc.abortFlush()
	require.ErrorIs(t, <-done, net.ErrClosed)
}

// TestAbortFlushBeforeTheFlush: a flush after abortFlush writes nothing.
func TestAbortFlushBeforeTheFlush(t *testing.T) {
	sc := newStuckConn()
	rc := GatherRecords(sc).(*recordConn)
	rc.gather()
	_, err := rc.Write([]byte("a record"))
	require.NoError(t, err)
	rc.abortFlush()
	require.ErrorIs(t, rc.flush(), net.ErrClosed)
	require.Empty(t, sc.writing, "the flush wrote to a connection being closed")
}
