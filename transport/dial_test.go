package transport_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// noProxy clears the proxy environment for a test, and makes dials read
// it afresh, so that the test can set it.
func noProxy(t *testing.T) {
	transport.ProxyEnvPerDial(t)
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
}

func dialErr(t *testing.T, err error, op string) *transport.DialError {
	t.Helper()
	var de *transport.DialError
	require.ErrorAs(t, err, &de)
	require.Equal(t, op, de.Op, "failed step in %v", err)
	return de
}

func TestDialDNSFailure(t *testing.T) {
	noProxy(t)
	_, err := transport.Dial(testCtx(t), "https://no-such-edge.invalid:8443/device", "", nil, nil)
	dialErr(t, err, "resolve")
	var dns *net.DNSError
	require.ErrorAs(t, err, &dns)
	require.Contains(t, err.Error(), "no-such-edge.invalid")
}

func TestDialRefused(t *testing.T) {
	noProxy(t)
	addr := testutil.ClosedAddr(t)
	_, err := transport.Dial(testCtx(t), "https://"+addr+"/device", "", nil, nil)
	dialErr(t, err, "connect")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
}

func TestDialUnknownAuthority(t *testing.T) {
	noProxy(t)
	us, _ := newUpgradeServer(t, nil)
	other := certstest.New(t) // a CA the server's certificate does not chain to
	_, err := transport.Dial(testCtx(t), "https://"+us.addr+"/device", "", other.ClientTLS(), nil)
	dialErr(t, err, "tls")
	var ua x509.UnknownAuthorityError
	require.ErrorAs(t, err, &ua)
}

func TestDialHandshakeTimeout(t *testing.T) {
	noProxy(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // accepts and never answers
		defer wg.Done()
		c, err := ln.Accept()
		if err == nil {
			buf := make([]byte, 1024)
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			c.Close()
		}
	}()
	_, err = transport.Dial(testCtx(t), "https://"+ln.Addr().String()+"/device", "", nil, &transport.Config{HandshakeTimeout: 100 * time.Millisecond})
	dialErr(t, err, "tls")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	ln.Close()
	wg.Wait()
}

// TestDialHTTPStatus: a refused upgrade reports the status with a hint and
// the edge's reason text.
func TestDialHTTPStatus(t *testing.T) {
	noProxy(t)
	tests := []struct {
		code   int
		reason string
		hint   string
	}{
		{401, "token expired", "check the token"},
		{403, "not allowed on device d1", "forbidden"},
		{404, "device d1 is not connected", "device not connected"},
		{409, "device d1 is already connected", "already connected"},
		{426, "expected a qbee-v1 upgrade", "check the URL"},
	}
	reasons := map[string]int{}
	for _, tt := range tests {
		reasons[tt.reason] = tt.code
	}
	pki := certstest.New(t)
	srv := &http.Server{ErrorLog: quietLog, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason := r.URL.Query().Get("reason")
		http.Error(w, reason, reasons[reason])
	}), TLSConfig: pki.EdgeTLS()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close(); <-done })
	for _, tt := range tests {
		t.Run(http.StatusText(tt.code), func(t *testing.T) {
			u := "https://" + ln.Addr().String() + "/client/d1?reason=" + url.QueryEscape(tt.reason)
			_, err := transport.Dial(testCtx(t), u, "Bearer x", pki.ClientTLS(), nil)
			dialErr(t, err, "upgrade")
			var se *transport.StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, tt.code, se.StatusCode)
			require.Equal(t, tt.reason, se.Reason)
			require.Contains(t, err.Error(), tt.hint)
			require.Contains(t, err.Error(), tt.reason)
		})
	}
}

// TestDial101WithoutUpgrade: a 101 answer without "Upgrade: websocket" is
// refused rather than trusted.
func TestDial101WithoutUpgrade(t *testing.T) {
	noProxy(t)
	pki := certstest.New(t)
	e := newRawEdgeAnswer(t, pki, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n")
	_, err := transport.Dial(testCtx(t), e, "", pki.ClientTLS(), nil)
	dialErr(t, err, "upgrade")
	require.Contains(t, err.Error(), "Upgrade")
}

func TestDialBadURL(t *testing.T) {
	for _, u := range []string{"http://edge:80/device", "https:///device", "::"} {
		_, err := transport.Dial(testCtx(t), u, "", nil, nil)
		require.Error(t, err, u)
	}
}

// connectProxy is an HTTP CONNECT proxy with basic authentication. It maps
// every host to 127.0.0.1, so names that do not resolve can be tunnelled.
type connectProxy struct {
	addr    string
	mu      sync.Mutex
	targets []string
}

func newConnectProxy(t *testing.T, user, pass string) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &connectProxy{addr: ln.Addr().String()}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	var wg sync.WaitGroup
	var cmu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c)
			cmu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				p.mu.Lock()
				p.targets = append(p.targets, req.Host)
				p.mu.Unlock()
				if req.Header.Get("Proxy-Authorization") != want {
					_, _ = c.Write([]byte("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"))
					return
				}
				_, port, _ := net.SplitHostPort(req.Host)
				up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
				if err != nil {
					_, _ = c.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"))
					return
				}
				cmu.Lock()
				conns = append(conns, up)
				cmu.Unlock()
				_, _ = c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
				_, _, _ = transport.Splice(context.Background(), c, up, nil)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// proxiedEdge serves upgrades with a certificate for edge.test, a name
// only the proxy can reach.
func proxiedEdge(t *testing.T) (*upgradeServer, *certstest.PKI, string) {
	pki := certstest.New(t)
	kp, err := pki.CA.IssueServer([]string{"edge.test"}, certs.Options{})
	require.NoError(t, err)
	us := serveUpgrade(t, nil, certs.EdgeTLSConfig(kp.TLSCertificate()))
	_, port, _ := net.SplitHostPort(us.addr)
	return us, pki, "edge.test:" + port
}

func TestDialThroughProxy(t *testing.T) {
	noProxy(t)
	us, pki, edge := proxiedEdge(t)
	proxy := newConnectProxy(t, "alice", "s3cret")
	t.Setenv("HTTPS_PROXY", "http://alice:s3cret@"+proxy.addr)

	s, err := transport.Dial(testCtx(t), "https://"+edge+"/client/d1", "Bearer tok", pki.ClientTLS(), nil)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, []string{edge}, proxy.seen())

	// The session works end to end through the proxy.
	srv := us.session(t)
	st, err := s.Open()
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, wire.WriteMessage(st, wire.MsgReload, nil))
	ps, err := srv.Accept()
	require.NoError(t, err)
	defer ps.Close()
	m, err := wire.ReadMessage(ps)
	require.NoError(t, err)
	require.Equal(t, wire.MsgReload, m.Type)
}

func TestDialProxyRejectsCredentials(t *testing.T) {
	noProxy(t)
	_, pki, edge := proxiedEdge(t)
	proxy := newConnectProxy(t, "alice", "s3cret")
	t.Setenv("HTTPS_PROXY", "http://alice:wrong@"+proxy.addr)
	_, err := transport.Dial(testCtx(t), "https://"+edge+"/client/d1", "", pki.ClientTLS(), nil)
	dialErr(t, err, "proxy")
	require.Contains(t, err.Error(), "407")
}

func TestDialNoProxy(t *testing.T) {
	noProxy(t)
	_, pki, edge := proxiedEdge(t)
	proxy := newConnectProxy(t, "alice", "s3cret")
	t.Setenv("HTTPS_PROXY", "http://alice:s3cret@"+proxy.addr)
	t.Setenv("NO_PROXY", "edge.test")
	// Direct: edge.test does not resolve, and the proxy is never asked.
	_, err := transport.Dial(testCtx(t), "https://"+edge+"/client/d1", "", pki.ClientTLS(), nil)
	require.Error(t, err)
	var de *transport.DialError
	require.ErrorAs(t, err, &de)
	require.False(t, strings.HasPrefix(de.Op, "proxy"), "dialled through the proxy: %v", err)
	require.Empty(t, proxy.seen())
}

// TestDialErrorsSayWhatToDo: every dial failure a user can fix carries a
// hint.
func TestDialErrorsSayWhatToDo(t *testing.T) {
	noProxy(t)
	refused := testutil.ClosedAddr(t)
	us, _ := newUpgradeServer(t, nil)
	other := certstest.New(t)
	tests := []struct {
		name, url string
		tls       *tls.Config
		hint      string
	}{
		{"dns", "https://no-such-edge.invalid/device", nil, "check the host name"},
		{"refused", "https://" + refused + "/device", nil, "check that the edge runs"},
		{"unknown CA", "https://" + us.addr + "/device", other.ClientTLS(), "check the CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transport.Dial(testCtx(t), tt.url, "", tt.tls, nil)
			require.ErrorContains(t, err, tt.hint)
		})
	}
}

// TestDialEndlessAnswerHead: an answer whose headers never end fails the
// dial once the head is too long, instead of growing until the deadline.
func TestDialEndlessAnswerHead(t *testing.T) {
	noProxy(t)
	pki := certstest.New(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\n"))
		line := []byte("X-Filler: " + strings.Repeat("a", 1000) + "\r\n")
		for { // headers without end, until the dialer hangs up
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	}()
	_, err = transport.Dial(testCtx(t), "https://"+ln.Addr().String()+"/device", "", pki.ClientTLS(), nil)
	dialErr(t, err, "upgrade")
	require.NotErrorIs(t, err, context.DeadlineExceeded, "the dial must stop at the size limit, not at the deadline")
	<-done
}
