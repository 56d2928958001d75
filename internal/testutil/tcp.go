package testutil

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TCPServer serves every connection to a fresh 127.0.0.1 port with handle,
// one goroutine a connection, and returns the address. The connection is
// closed when handle returns. At the end of the test the listener and every
// open connection are closed, and TCPServer waits for the handlers.
func TCPServer(tb testing.TB, handle func(*net.TCPConn)) string {
	tb.Helper()
	return TCPServerAt(tb, "127.0.0.1:0", handle)
}

// TCPServerAt is TCPServer listening on addr ("127.0.0.2:0", say).
func TCPServerAt(tb testing.TB, addr string, handle func(*net.TCPConn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(tb, err)
	s := &tcpServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve(handle)
	tb.Cleanup(s.close)
	return ln.Addr().String()
}

type tcpServer struct {
	ln net.Listener
	wg sync.WaitGroup // the accept loop and the handlers

	mu sync.Mutex
	// mu guards the following.
	conns  map[net.Conn]struct{}
	closed bool
}

func (s *tcpServer) serve(handle func(*net.TCPConn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			handle(c.(*net.TCPConn))
		}()
	}
}

// track records c, unless the server is closing.
func (s *tcpServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *tcpServer) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *tcpServer) close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// EchoAfterEOF is a TCPServer handler: it reads until the client's EOF,
// then answers "echo:" and what it read in upper case. The answer arrives
// only if half-close carries through the whole path. It gives up after a
// minute.
func EchoAfterEOF(c *net.TCPConn) {
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	in, err := io.ReadAll(c)
	if err != nil {
		return
	}
	_, _ = c.Write([]byte("echo:" + strings.ToUpper(string(in))))
}

// LineEcho is a TCPServer handler that echoes bytes back as they come,
// for live, interactive streams, until the client's EOF or the end of the
// test.
func LineEcho(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
}

// EchoThenBye is a TCPServer handler that echoes bytes back as they come
// and, at the client's EOF, writes "bye": half-close shows end to end.
func EchoThenBye(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_, _ = io.WriteString(c, "bye")
}

// CountingSink returns a TCPServer handler that reads each connection to
// the client's EOF and answers with the number of bytes it read, written
// by format (Decimal or BigEndian64).
func CountingSink(format func(n int64) []byte) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		_, _ = c.Write(format(n))
	}
}

// Decimal formats a CountingSink's count as decimal text.
func Decimal(n int64) []byte { return strconv.AppendInt(nil, n, 10) }

// BigEndian64 formats a CountingSink's count as 8 bytes, big endian.
func BigEndian64(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// Tarpit listens on a fresh 127.0.0.1 port, accepts connections and never
// reads from them; they are closed at the end of the test.
func Tarpit(tb testing.TB) string {
	tb.Helper()
	stop := make(chan struct{})
	addr := TCPServer(tb, func(*net.TCPConn) { <-stop })
	// Cleanups run last-in first-out: the handlers return before
	// TCPServer waits for them.
	tb.Cleanup(func() { close(stop) })
	return addr
}
