package transport

import (
	"net"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http/httpproxy"
)

// ProxyEnvPerDial makes dials read HTTPS_PROXY and NO_PROXY afresh each
// time until t ends, so that a test can set them with t.Setenv: the
// process-wide reading of net/http keeps the first values it saw.
func ProxyEnvPerDial(t testing.TB) {
	f := func(u *url.URL) (*url.URL, error) { return httpproxy.FromEnvironment().ProxyFunc()(u) }
	proxyOverride.Store(&f)
	t.Cleanup(func() { proxyOverride.Store(nil) })
}

// Unread reports whether a stream of s holds bytes that arrived and that
// its application has not read.
func (s *Session) Unread() bool { return s.conn.pol.unread() }

// Marked reports how many streams the frame layer remembers as ended by
// this side (their FIN or reset sent, smux's FIN still to come).
func (s *Session) Marked() int {
	s.conn.wmu.Lock()
	defer s.conn.wmu.Unlock()
	return len(s.conn.finSent)
}

// TCPPair returns the two ends of a loopback TCP connection, closed when t
// ends.
func TCPPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	p, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return c.(*net.TCPConn), p.(*net.TCPConn)
}
