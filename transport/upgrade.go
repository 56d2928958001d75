package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// ProtocolToken is the value of Sec-WebSocket-Protocol on the upgrade.
const ProtocolToken = "qbee-v1"

// maxResponseBody bounds the reason text read from a refused upgrade.
const maxResponseBody = 4096

// maxResponseHead bounds the status line and headers of an answer to the
// upgrade or to a proxy CONNECT; a longer head fails the dial.
const maxResponseHead = 64 << 10

// IsUpgradeRequest reports whether r asks for a qbee-v1 upgrade. Header
// values are compared case-insensitively and as comma-separated token lists.
func IsUpgradeRequest(r *http.Request) bool {
	return r.Method == http.MethodGet &&
		headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket") &&
		headerHasToken(r.Header, "Sec-WebSocket-Protocol", ProtocolToken)
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Upgrade answers a qbee-v1 upgrade request with 101 and returns the edge
// side of the session. A request that is not an upgrade gets 426 and
// ErrNotUpgrade. Authentication is the caller's job, before Upgrade.
//
// The connection is hijacked: http.Server.Shutdown no longer tracks it, so
// the caller owns the returned session and must close it.
func Upgrade(w http.ResponseWriter, r *http.Request, cfg *Config) (*Session, error) {
	if !IsUpgradeRequest(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "expected a qbee-v1 upgrade (Connection: upgrade, Upgrade: websocket, Sec-WebSocket-Protocol: qbee-v1)", http.StatusUpgradeRequired)
		return nil, ErrNotUpgrade
	}
	if err := VerifyConfig(cfg); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return nil, err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "upgrade not supported by this server", http.StatusInternalServerError)
		return nil, errors.New("transport: response writer cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack: %w", err)
	}
	d := cfg.WithDefaults()
	// The server's header deadlines must not outlive the handshake.
	_ = conn.SetDeadline(time.Now().Add(d.HandshakeTimeout))
	if _, err := io.WriteString(conn, upgradeAnswer(d)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("write upgrade answer: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	sess, err := newSession(conn, readAhead(brw.Reader, conn), true, cfg, parsePeer(r.Header))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return sess, nil
}

// upgradeAnswer is the 101 answer, with our extension headers.
func upgradeAnswer(d *Config) string {
	h := http.Header{}
	announce(h, d)
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\n" +
		"Connection: Upgrade\r\n" +
		"Upgrade: websocket\r\n" +
		"Sec-WebSocket-Protocol: " + ProtocolToken + "\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.String()
}

// readAhead returns a reader that yields the bytes br buffered beyond the
// HTTP message, then reads c directly. It returns nil when nothing was
// buffered, so the session reads c without an extra layer.
func readAhead(br *bufio.Reader, c net.Conn) io.Reader {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return io.MultiReader(bytes.NewReader(bytes.Clone(b)), c)
}

// DialError says which step of Dial failed: "resolve", "connect", "proxy",
// "tls" or "upgrade". Err is the underlying error, for errors.As.
type DialError struct {
	Op   string
	Addr string
	Err  error
}

func (e *DialError) Error() string {
	msg := fmt.Sprintf("%s %s: %v", e.Op, e.Addr, e.Err)
	if h := e.Hint(); h != "" {
		msg += " (" + h + ")"
	}
	return msg
}

// hint says what to do next, for the failures a user can fix.
func (e *DialError) Hint() string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		status    *StatusError
	)
	switch {
	case errors.As(e.Err, &status):
		return "" // StatusError carries its own hint
	case errors.Is(e.Err, context.DeadlineExceeded):
		return "no answer in time: check that the address is the edge's and that nothing in between drops the connection"
	case strings.HasPrefix(e.Op, "proxy"):
		return "check HTTPS_PROXY and NO_PROXY"
	case e.Op == "resolve":
		return "check the host name in the edge URL and the DNS settings"
	case e.Op == "connect":
		return "check that the edge runs and that this port is reachable"
	case errors.As(e.Err, &unknownCA):
		return "the edge's certificate is not signed by a CA this side trusts: check the CA file"
	case errors.As(e.Err, &hostname):
		return "the edge's certificate does not name this host: check the edge URL"
	case errors.As(e.Err, &invalid) && invalid.Reason == x509.Expired:
		return "a certificate has expired or is not yet valid: check the clocks and renew it"
	case e.Op == "tls":
		return "the TLS handshake failed: check the certificates on both sides"
	}
	return ""
}

func (e *DialError) Unwrap() error { return e.Err }

// Dial connects to an edge URL (https://host[:port]/path), performs the TLS
// handshake with tlsConf and the qbee-v1 upgrade, and returns the dialer
// side of the session. authorization is sent as the Authorization header
// when not empty ("Bearer <token>" for clients; devices send none).
//
// HTTPS_PROXY and NO_PROXY are honoured through HTTP CONNECT, with basic
// authentication from the proxy URL's user info. As in net/http, they are
// read on the first dial and kept for the life of the process. ctx and
// Config.HandshakeTimeout bound every step until the 101 arrives; the
// session itself has no deadline.
func Dial(ctx context.Context, rawURL, authorization string, tlsConf *tls.Config, cfg *Config) (*Session, error) {
	var h http.Header
	if authorization != "" {
		h = http.Header{"Authorization": {authorization}}
	}
	return DialHeader(ctx, rawURL, h, tlsConf, cfg)
}

// reservedHeaders are the request headers DialHeader sets itself.
var reservedHeaders = []string{"Host", "Connection", "Upgrade", "Sec-Websocket-Protocol", "User-Agent",
	"Content-Length", "Transfer-Encoding", HeaderExtensions, HeaderKeepAlive, HeaderMaxStreams}

// DialHeader is Dial with header sent on the upgrade request: an
// Authorization header, the agent information headers (AgentInfo.Header),
// or any other. It may not set the headers the upgrade itself uses (Host,
// Connection, Upgrade, Sec-WebSocket-Protocol, User-Agent, the framing
// headers and this package's extension headers), and no value may hold a
// control character.
func DialHeader(ctx context.Context, rawURL string, header http.Header, tlsConf *tls.Config, cfg *Config) (*Session, error) {
	d := cfg.WithDefaults()
	if err := VerifyConfig(d); err != nil {
		return nil, err
	}
	if err := checkHeader(header); err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("transport: parse edge URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "wss" {
		return nil, fmt.Errorf("transport: edge URL %q: scheme must be https", rawURL)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("transport: edge URL %q has no host", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}

	ctx, cancel := context.WithTimeout(ctx, d.HandshakeTimeout)
	defer cancel()

	conn, err := dialMaybeProxy(ctx, addr)
	if err != nil {
		return nil, err
	}
	// Any ctx expiry from here to the 101 unblocks the handshake.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	tc := tlsConf.Clone()
	if tc == nil {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	tlsConn := tls.Client(GatherRecords(conn), tc)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, &DialError{Op: "tls", Addr: addr, Err: ctxErr(ctx, err)}
	}

	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, u.Host)
	req.WriteString("Connection: upgrade\r\nUpgrade: websocket\r\n")
	req.WriteString("Sec-WebSocket-Protocol: " + ProtocolToken + "\r\n")
	ext := http.Header{}
	announce(ext, d)
	_ = ext.Write(&req)
	_ = header.Write(&req)
	req.WriteString("User-Agent: tether\r\n\r\n")
	if _, err := io.WriteString(tlsConn, req.String()); err != nil {
		tlsConn.Close()
		return nil, &DialError{Op: "upgrade", Addr: addr, Err: ctxErr(ctx, err)}
	}
	// The limit covers the head and the body of a refusal; after a 101 the
	// session reads what br buffered, then tlsConn directly.
	br := bufio.NewReader(io.LimitReader(tlsConn, maxResponseHead+maxResponseBody))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tlsConn.Close()
		return nil, &DialError{Op: "upgrade", Addr: addr, Err: ctxErr(ctx, err)}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		resp.Body.Close()
		tlsConn.Close()
		return nil, &DialError{Op: "upgrade", Addr: addr, Err: &StatusError{
			StatusCode: resp.StatusCode,
			Reason:     strings.TrimSpace(string(body)),
		}}
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") {
		tlsConn.Close()
		return nil, &DialError{Op: "upgrade", Addr: addr, Err: errors.New("101 answer without Upgrade: websocket")}
	}
	if !stop() {
		tlsConn.Close()
		return nil, &DialError{Op: "upgrade", Addr: addr, Err: ctx.Err()}
	}
	_ = conn.SetDeadline(time.Time{})
	sess, err := newSession(tlsConn, readAhead(br, tlsConn), false, d, parsePeer(resp.Header))
	if err != nil {
		tlsConn.Close()
		return nil, err
	}
	return sess, nil
}

// checkHeader refuses the headers DialHeader may not send.
func checkHeader(h http.Header) error {
	for name, vs := range h {
		canon := http.CanonicalHeaderKey(name)
		for _, r := range reservedHeaders {
			if canon == http.CanonicalHeaderKey(r) {
				return fmt.Errorf("transport: header %s is set by the upgrade itself; leave it out", canon)
			}
		}
		if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ':' }) {
			return fmt.Errorf("transport: header name %q is not a valid token", name)
		}
		for _, v := range vs {
			if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				return fmt.Errorf("transport: header %s holds a control character; send printable text", canon)
			}
		}
	}
	return nil
}

// ctxErr prefers the context's error when the context ended the step.
func ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		// The connection's deadline, set from ctx, fired first.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// proxyFor returns the proxy for an edge URL: HTTPS_PROXY and NO_PROXY,
// read once per process, as net/http reads them (and with its code, so
// that the agent carries no second copy of it and its tables).
func proxyFor(u *url.URL) (*url.URL, error) {
	if f := proxyOverride.Load(); f != nil {
		return (*f)(u)
	}
	return http.ProxyFromEnvironment(&http.Request{URL: u})
}

// proxyOverride replaces proxyFor's reading in tests (export_test.go).
var proxyOverride atomic.Pointer[func(*url.URL) (*url.URL, error)]

// dialMaybeProxy opens a TCP connection to addr, through the HTTPS proxy
// from the environment when one applies.
func dialMaybeProxy(ctx context.Context, addr string) (net.Conn, error) {
	proxyURL, err := proxyFor(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil, &DialError{Op: "proxy", Addr: addr, Err: fmt.Errorf("invalid proxy setting: %w", err)}
	}
	var dialer net.Dialer
	if proxyURL == nil {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, classifyDial(ctx, addr, err)
		}
		return conn, nil
	}
	paddr := proxyURL.Host
	if proxyURL.Port() == "" {
		paddr = net.JoinHostPort(proxyURL.Hostname(), "80")
	}
	conn, err := dialer.DialContext(ctx, "tcp", paddr)
	if err != nil {
		derr := classifyDial(ctx, paddr, err)
		derr.Op = "proxy " + derr.Op
		return nil, derr
	}
	if err := proxyConnect(ctx, conn, proxyURL, addr); err != nil {
		conn.Close()
		return nil, &DialError{Op: "proxy", Addr: paddr, Err: err}
	}
	return conn, nil
}

func classifyDial(ctx context.Context, addr string, err error) *DialError {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &DialError{Op: "resolve", Addr: addr, Err: err}
	}
	return &DialError{Op: "connect", Addr: addr, Err: ctxErr(ctx, err)}
}

// proxyConnect asks an HTTP proxy on conn for a tunnel to addr.
func proxyConnect(ctx context.Context, conn net.Conn, proxyURL *url.URL, addr string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	var req strings.Builder
	fmt.Fprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", addr, addr)
	if u := proxyURL.User; u != nil {
		pw, _ := u.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pw))
		req.WriteString("Proxy-Authorization: Basic " + cred + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return ctxErr(ctx, err)
	}
	// Read the answer byte-wise up to the blank line so that no byte of the
	// tunnel is consumed by a read-ahead buffer.
	br := bufio.NewReaderSize(&oneByteReader{io.LimitReader(conn, maxResponseHead)}, 16)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return ctxErr(ctx, err)
	}
	// The body of a CONNECT answer is the tunnel itself: never read it.
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy refused CONNECT %s: %s", addr, resp.Status)
	}
	return nil
}

// oneByteReader reads at most one byte per call, so a bufio.Reader on top of
// it never reads past what it returns.
type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}
