//go:build linux

package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

const webDevice = "d-web"

var webKey = []byte("0123456789abcdef0123456789abcdef-test-key")

// lockedBuffer collects the edge's logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// webRig is a real edge with the web terminal on, a device serving real
// PTYs with /bin/sh, and the edge's logs.
type webRig struct {
	m    *mock.EdgeMock
	dc   *device.Client
	logs *lockedBuffer
}

func newWebRig(t *testing.T, cfg edge.WebConfig, tune ...func(*mock.Options)) *webRig {
	t.Helper()
	logs := &lockedBuffer{}
	if cfg.Key == nil {
		cfg.Key = webKey
	}
	o := mock.Options{Web: &cfg, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(logs, webTLog{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range tune {
		f(&o)
	}
	m := newEdge(t, o)
	dc := m.DeviceClientWithID(webDevice)
	srv := &pty.Server{Config: pty.Config{Enabled: true, Shell: "/bin/sh"}}
	dc.Handle(wire.MsgPTY, srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return &webRig{m: m, dc: dc, logs: logs}
}

type webTLog struct{ t *testing.T }

func (l webTLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// browser is an HTTP client with a cookie jar, as a browser on the
// edge's origin.
type browser struct {
	t      *testing.T
	hc     *http.Client
	origin string // the edge's URL, which is its public URL
}

func (r *webRig) browser(t *testing.T) *browser { return newBrowser(t, r.m.URL(), r.m.ClientTLS()) }

// signedIn is a browser signed in with the ops token.
func (r *webRig) signedIn(t *testing.T) *browser {
	t.Helper()
	b := r.browser(t)
	require.Equal(t, http.StatusSeeOther, b.signIn(opsToken).StatusCode)
	return b
}

func newBrowser(t *testing.T, edgeURL string, tc *tls.Config) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: t, hc: hc, origin: edgeURL}
}

func (b *browser) do(method, path string, body url.Values, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	if body == nil {
		return b.send(method, path, nil, hdr)
	}
	hdr = maps.Clone(hdr)
	if hdr == nil {
		hdr = map[string]string{}
	}
	hdr["Content-Type"] = "application/x-www-form-urlencoded"
	return b.send(method, path, strings.NewReader(body.Encode()), hdr)
}

// send is do with any body.
func (b *browser) send(method, path string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.origin+path, body)
	require.NoError(b.t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.hc.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return resp, string(out)
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	csrfMeta  = regexp.MustCompile(`name="tether-csrf" content="([^"]+)"`)
)

func find(t *testing.T, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	require.NotNil(t, m, "no %v in the page:\n%s", re, page)
	return m[1]
}

// signIn signs in with token and returns the response to the POST.
func (b *browser) signIn(token string) *http.Response {
	b.t.Helper()
	resp, page := b.do("GET", "/web/login", nil, nil)
	require.Equal(b.t, http.StatusOK, resp.StatusCode)
	csrf := find(b.t, csrfField, page)
	resp, _ = b.do("POST", "/web/login", url.Values{"token": {token}, "csrf": {csrf}}, map[string]string{"Origin": b.origin})
	return resp
}

// csrf returns the session's CSRF token, from the device list page.
func (b *browser) csrf() string {
	b.t.Helper()
	resp, page := b.do("GET", "/web/", nil, nil)
	require.Equal(b.t, http.StatusOK, resp.StatusCode, page)
	return find(b.t, csrfField, page)
}

// ticket asks for a ticket for device; it returns the status and the
// ticket (empty on a refusal).
func (b *browser) ticket(device, csrf, origin string) (int, string) {
	b.t.Helper()
	hdr := map[string]string{"X-CSRF-Token": csrf}
	if origin != "" {
		hdr["Origin"] = origin
	}
	resp, body := b.do("POST", "/web/ticket?device="+url.QueryEscape(device), nil, hdr)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	var out struct{ Ticket string }
	require.NoError(b.t, json.Unmarshal([]byte(body), &out))
	require.NotEmpty(b.t, out.Ticket)
	return resp.StatusCode, out.Ticket
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.origin + "/web/")
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// dialWS opens /web/ws from origin; it returns the HTTP status of a
// refused upgrade.
func (b *browser) dialWS(ctx context.Context, origin string) (*websocket.Conn, int, error) {
	c, resp, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(b.origin, "https")+"/web/ws",
		&websocket.DialOptions{HTTPClient: b.hc, HTTPHeader: http.Header{"Origin": {origin}}})
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	if err == nil {
		b.t.Cleanup(func() { c.CloseNow() })
	}
	return c, code, err
}

// term is the page's side of a terminal.
type term struct {
	t     *testing.T
	c     *websocket.Conn
	out   bytes.Buffer
	ack   bool  // acknowledge output as it comes
	taken int64 // bytes of keystrokes the edge reported taken
	exit  *int
	errs  []string
}

func (b *browser) openTerm(ctx context.Context, device string, cols, rows int) *term {
	b.t.Helper()
	code, tk := b.ticket(device, b.csrf(), b.origin)
	require.Equal(b.t, http.StatusOK, code)
	c, status, err := b.dialWS(ctx, b.origin)
	require.NoError(b.t, err, "status %d", status)
	hello, _ := json.Marshal(map[string]any{"ticket": tk, "device": device, "cols": cols, "rows": rows, "term": "xterm-256color"})
	require.NoError(b.t, c.Write(ctx, websocket.MessageText, hello))
	return &term{t: b.t, c: c, ack: true}
}

// next reads one message; it reports false when the connection ended.
func (tm *term) next(ctx context.Context) bool {
	typ, b, err := tm.c.Read(ctx)
	if err != nil {
		return false
	}
	if typ == websocket.MessageBinary {
		tm.out.Write(b)
		if tm.ack {
			tm.sendJSON(ctx, map[string]any{"t": "ack", "n": len(b)})
		}
		return true
	}
	var m struct {
		T    string
		N    int64
		Code *int
		Msg  string
	}
	require.NoError(tm.t, json.Unmarshal(b, &m))
	switch m.T {
	case "taken":
		tm.taken += m.N
	case "exit":
		tm.exit = m.Code
	case "error":
		tm.errs = append(tm.errs, m.Msg)
	}
	return true
}

func (tm *term) sendJSON(ctx context.Context, v any) {
	b, _ := json.Marshal(v)
	_ = tm.c.Write(ctx, websocket.MessageText, b)
}

func (tm *term) keys(ctx context.Context, s string) {
	tm.t.Helper()
	require.NoError(tm.t, tm.c.Write(ctx, websocket.MessageBinary, []byte(s)))
}

// expect reads until the output matches re.
func (tm *term) expect(ctx context.Context, re string) {
	tm.t.Helper()
	rx := regexp.MustCompile(re)
	for !rx.Match(tm.out.Bytes()) {
		if !tm.next(ctx) {
			tm.t.Fatalf("the terminal ended before %q; output so far:\n%s\nerrors: %v", re, tail(tm.out.String()), tm.errs)
		}
	}
}

// drain reads until the connection ends.
func (tm *term) drain(ctx context.Context) {
	for tm.next(ctx) {
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}
	return s
}

func TestWebTerminal(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	b := r.browser(t)
	resp := b.signIn(opsToken)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	sc := b.cookie("tether_session")
	require.NotNil(t, sc, "sign-in set no session cookie")
	setCookie := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
	for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/web"} {
		require.Contains(t, setCookie, attr)
	}

	resp, page := b.do("GET", "/web/", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `href="/web/d/`+webDevice+`"`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	resp, page = b.do("GET", "/web/d/"+webDevice, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, "/web/static/xterm.js")
	resp, js := b.do("GET", "/web/static/xterm.js", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, js, "xterm")

	ctx := ctxT(t)
	tm := b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "echo $((6*7))\r")
	tm.expect(ctx, `\b42\r\n`)
	tm.sendJSON(ctx, map[string]any{"t": "resize", "cols": 100, "rows": 30})
	// The resize goes its own way: ask until the shell sees it.
	for i := 0; ; i++ {
		tm.out.Reset()
		tm.keys(ctx, "stty size\r")
		tm.expect(ctx, `\b\d+ \d+\r\n`)
		if regexp.MustCompile(`\b30 100\r\n`).Match(tm.out.Bytes()) {
			break
		}
		require.Less(t, i, 100, "stty size never showed 30 100; last output:\n%s", tm.out.String())
		time.Sleep(20 * time.Millisecond)
	}
	tm.keys(ctx, "exit 7\r")
	tm.drain(ctx)
	require.NotNil(t, tm.exit, "no exit status; errors: %v", tm.errs)
	require.Equal(t, 7, *tm.exit)

	// The record follows the close that the page saw.
	closeEv := waitEvent(t, r.m, func(e edge.Event) bool { return e.Kind == edge.EventStreamClose && e.Method == "web" })
	require.Equal(t, "ops", closeEv.Client)
	require.Equal(t, webDevice, closeEv.Device)
	require.NotNil(t, closeEv.ExitCode)
	require.Equal(t, 7, *closeEv.ExitCode)
	requireNoSecrets(t, r, opsToken, sc.Value)
}

// TestWebExitWithKeysOnTheirWay: keys typed while the shell exits reach
// a device that no longer reads them. The page still gets the exit
// status, and the edge audits a normal end, however the keys' refusal
// and the end of the output race (on a loaded machine, the refusal often
// comes first).
func TestWebExitWithKeysOnTheirWay(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	b := r.signedIn(t)
	ctx := ctxT(t)
	for round := range 3 {
		tm := b.openTerm(ctx, webDevice, 80, 24)
		tm.keys(ctx, "echo ready-$((6*7))\r")
		tm.expect(ctx, `ready-42\r\n`)
		tm.keys(ctx, "exit 7\r")
		typed := make(chan struct{})
		go func() {
			defer close(typed)
			for range 64 {
				if tm.c.Write(ctx, websocket.MessageBinary, bytes.Repeat([]byte("k"), 512)) != nil {
					return
				}
			}
		}()
		tm.drain(ctx)
		<-typed
		require.NotNil(t, tm.exit, "round %d: no exit status; errors: %v", round, tm.errs)
		require.Equal(t, 7, *tm.exit)
		require.Empty(t, tm.errs, "round %d", round)
	}
	closes := 0
	require.Eventually(t, func() bool {
		closes = 0
		for _, e := range r.m.AuditEvents() {
			if e.Kind == edge.EventStreamClose && e.Method == "web" {
				closes++
			}
		}
		return closes == 3
	}, 20*time.Second, 10*time.Millisecond)
	for _, e := range r.m.AuditEvents() {
		if e.Kind == edge.EventStreamClose && e.Method == "web" {
			require.Equal(t, "ok", e.Result, "reason: %s", e.Reason)
			// Keys that came after the shell's end were refused: said, not
			// an error.
			require.Contains(t, []string{"", "one end finished while the other was still sending; the rest was refused"}, e.Reason)
			require.NotNil(t, e.ExitCode)
			require.Equal(t, 7, *e.ExitCode)
		}
	}
}

// waitEvent waits for an audit record that match accepts.
func waitEvent(t *testing.T, m *mock.EdgeMock, match func(edge.Event) bool) edge.Event {
	t.Helper()
	var found *edge.Event
	require.Eventually(t, func() bool {
		for _, e := range m.AuditEvents() {
			if match(e) {
				found = &e
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "no such audit record")
	return *found
}

// requireNoSecrets checks that none of secrets is in the edge's logs or
// audit records.
func requireNoSecrets(t *testing.T, r *webRig, secrets ...string) {
	t.Helper()
	audit, err := json.Marshal(r.m.AuditEvents())
	require.NoError(t, err)
	logs := r.logs.String()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		require.NotContains(t, logs, s, "a secret is in the edge's logs")
		require.NotContains(t, string(audit), s, "a secret is in the audit records")
	}
}

// TestWebFlowControl: output that the page does not acknowledge stops at
// the edge's bound, the device is pushed back, and keystrokes still get
// through; once acknowledged, a flood arrives whole.
func TestWebFlowControl(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	b := r.signedIn(t)
	ctx := ctxT(t)
	tm := b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "stty -echo; yes\r")
	tm.ack = false
	// Without acks the edge sends at most its bound (1 MiB) and one chunk.
	const bound = 1<<20 + 32<<10
	for tm.out.Len() < 1<<20 {
		require.True(t, tm.next(ctx))
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	for tm.next(rctx) {
		require.LessOrEqual(t, tm.out.Len(), bound, "the edge sent more unacknowledged output than its bound")
	}
	cancel()
	// The read's deadline closed that connection: open another, with the
	// `yes` of the first one gone with it.
	tm = b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "stty -echo; yes\r")
	tm.ack = false
	for tm.out.Len() < 1<<20 {
		require.True(t, tm.next(ctx))
	}
	// Ctrl-C is not queued behind the output the edge holds back.
	tm.keys(ctx, "\x03")
	tm.keys(ctx, "echo done-$((20+22))\r")
	tm.ack = true
	tm.sendJSON(ctx, map[string]any{"t": "ack", "n": tm.out.Len()})
	tm.expect(ctx, `done-42`)
	tm.out.Reset()
	tm.keys(ctx, "seq 1 200000; exit 3\r")
	tm.drain(ctx)
	require.NotNil(t, tm.exit)
	require.Equal(t, 3, *tm.exit)
	require.Contains(t, tm.out.String(), "\n199999\r\n200000\r\n", "the flood's last lines are not intact")
}

// TestWebLargePaste: a paste far larger than the device's stream window,
// into a program that echoes it, goes through whole. The page keeps at
// most 1 MiB of keystrokes ahead of what the edge reports taken, as the
// page's script does; the edge reads on meanwhile, so the acks of the
// echo, queued behind the paste, still reach it.
func TestWebLargePaste(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	b := r.signedIn(t)
	ctx := ctxT(t)
	tm := b.openTerm(ctx, webDevice, 80, 24)
	const size = 8 << 20
	line := strings.Repeat("x", 63) + "\n"
	paste := []byte(strings.Repeat(line, size/len(line)))
	tm.keys(ctx, fmt.Sprintf("stty -echo -icanon; echo READY-$((1+1)); head -c %d; echo; echo PASTED-$((40+2))\r", len(paste)))
	tm.expect(ctx, `READY-2`) // the tty echoes no more
	var sent int64
	for len(paste) > 0 {
		n := min(len(paste), 32<<10)
		if sent-tm.taken+int64(n) > 1<<20 {
			require.True(t, tm.next(ctx), "the terminal ended during the paste: %v", tm.errs)
			continue
		}
		require.NoError(t, tm.c.Write(ctx, websocket.MessageBinary, paste[:n]))
		paste, sent = paste[n:], sent+int64(n)
	}
	tm.expect(ctx, `PASTED-42`)
	require.Equal(t, size/len(line)*63, bytes.Count(tm.out.Bytes(), []byte("x")), "bytes of the paste were lost")
	require.Empty(t, tm.errs)
}

// TestWebPasteAheadOfItsBound: a page that sends keystrokes past its
// bound while the device reads none is ended, with the reason, rather
// than held in the edge's memory.
func TestWebPasteAheadOfItsBound(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	b := r.signedIn(t)
	ctx := ctxT(t)
	tm := b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "stty -echo -icanon; sleep 600\r")
	chunk := bytes.Repeat([]byte("y"), 32<<10)
	for range 1024 { // 32 MiB, twice the largest stream window
		if tm.c.Write(ctx, websocket.MessageBinary, chunk) != nil {
			break
		}
	}
	tm.drain(ctx)
	require.NotEmpty(t, tm.errs, "the edge took 32 MiB of keystrokes that the device did not read")
	require.Contains(t, tm.errs[len(tm.errs)-1], "keystrokes that the device has not taken yet")
}

// TestWebFlowControlLyingPage: a page that acknowledges output it was
// never sent, and reads none, does not make the edge read the device's
// stream beyond its bound: the edge would hold all of it in memory.
func TestWebFlowControlLyingPage(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	b := r.signedIn(t)
	ctx := ctxT(t)
	// A small receive buffer while the page lies, so that little of what
	// the edge sends waits in this side's socket.
	var conns []*net.TCPConn
	tr := &http.Transport{TLSClientConfig: r.m.ClientTLS(), DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			conns = append(conns, c.(*net.TCPConn))
			err = c.(*net.TCPConn).SetReadBuffer(16 << 10)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	page := &browser{t: t, hc: &http.Client{Jar: b.hc.Jar, Transport: tr, Timeout: 30 * time.Second}, origin: b.origin}
	tm := page.openTerm(ctx, webDevice, 80, 24)
	tm.ack = false
	const flood = 32 << 20
	tm.keys(ctx, fmt.Sprintf("stty -echo; head -c %d /dev/zero; echo; echo END-$((40+2))\r", flood))
	for range 200 {
		tm.sendJSON(ctx, map[string]any{"t": "ack", "n": int64(1) << 40})
		time.Sleep(10 * time.Millisecond)
	}
	// Now read, acknowledging nothing: what arrives is what the edge
	// read from the device without an honest ack. That is at most what
	// its socket held when the page lied (its send buffer, at most
	// net.ipv4.tcp_wmem's largest) and the edge's bound (1 MiB).
	bound := 8 << 20
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			if n, err := strconv.Atoi(f[2]); err == nil {
				bound = max(bound, n+4<<20)
			}
		}
	}
	for _, c := range conns {
		require.NoError(t, c.SetReadBuffer(4<<20))
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		more := tm.next(rctx)
		cancel()
		if !more || tm.out.Len() >= bound || bytes.Contains(tm.out.Bytes()[max(0, tm.out.Len()-64):], []byte("END-42")) {
			break
		}
	}
	require.Less(t, tm.out.Len(), bound, "the edge read %d bytes from the device for a page that acknowledged none it was sent", tm.out.Len())
}

func TestWebAttacks(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	ctx := ctxT(t)

	t.Run("wrong token sets no cookie", func(t *testing.T) {
		b := r.browser(t)
		resp := b.signIn("not-a-token-of-this-edge")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Nil(t, b.cookie("tether_session"))
		requireNoSecrets(t, r, "not-a-token-of-this-edge")
	})
	t.Run("sign-in from another origin", func(t *testing.T) {
		b := r.browser(t)
		_, page := b.do("GET", "/web/login", nil, nil)
		csrf := find(t, csrfField, page)
		resp, _ := b.do("POST", "/web/login", url.Values{"token": {opsToken}, "csrf": {csrf}}, map[string]string{"Origin": "https://127.0.0.2"})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Nil(t, b.cookie("tether_session"))
	})
	t.Run("sign-in without the form's CSRF token", func(t *testing.T) {
		b := r.browser(t)
		resp, _ := b.do("POST", "/web/login", url.Values{"token": {opsToken}}, map[string]string{"Origin": b.origin})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Nil(t, b.cookie("tether_session"))
	})

	b := r.signedIn(t)
	csrf := b.csrf()

	t.Run("ticket from another origin", func(t *testing.T) {
		code, _ := b.ticket(webDevice, csrf, "https://127.0.0.2")
		require.Equal(t, http.StatusForbidden, code)
		code, _ = b.ticket(webDevice, csrf, "")
		require.Equal(t, http.StatusForbidden, code)
	})
	t.Run("ticket without the CSRF token", func(t *testing.T) {
		code, _ := b.ticket(webDevice, "", b.origin)
		require.Equal(t, http.StatusForbidden, code)
		code, _ = b.ticket(webDevice, csrf+"x", b.origin)
		require.Equal(t, http.StatusForbidden, code)
	})
	t.Run("ticket without a session", func(t *testing.T) {
		anon := r.browser(t)
		code, _ := anon.ticket(webDevice, csrf, anon.origin)
		require.Equal(t, http.StatusUnauthorized, code)
	})
	t.Run("WebSocket from another origin", func(t *testing.T) {
		_, code, err := b.dialWS(ctx, "https://127.0.0.2")
		require.Error(t, err)
		require.Equal(t, http.StatusForbidden, code)
	})
	t.Run("WebSocket without a session", func(t *testing.T) {
		anon := r.browser(t)
		_, code, err := anon.dialWS(ctx, anon.origin)
		require.Error(t, err)
		require.Equal(t, http.StatusUnauthorized, code)
	})

	// refused sends hello and expects the terminal refused with why.
	refused := func(t *testing.T, br *browser, hello map[string]any, why string) {
		t.Helper()
		c, code, err := br.dialWS(ctx, br.origin)
		require.NoError(t, err, "status %d", code)
		hb, _ := json.Marshal(hello)
		require.NoError(t, c.Write(ctx, websocket.MessageText, hb))
		tm := &term{t: t, c: c}
		tm.drain(ctx)
		require.Nil(t, tm.exit)
		require.NotEmpty(t, tm.errs, "the terminal was not refused")
		require.Contains(t, strings.Join(tm.errs, "; "), why)
		require.Empty(t, tm.out.String(), "a refused terminal sent output")
	}
	t.Run("reused ticket", func(t *testing.T) {
		_, tk := b.ticket(webDevice, csrf, b.origin)
		tm := func() *term {
			c, _, err := b.dialWS(ctx, b.origin)
			require.NoError(t, err)
			hb, _ := json.Marshal(map[string]any{"ticket": tk, "device": webDevice, "cols": 80, "rows": 24})
			require.NoError(t, c.Write(ctx, websocket.MessageText, hb))
			return &term{t: t, c: c, ack: true}
		}()
		tm.keys(ctx, "exit 0\r")
		tm.drain(ctx)
		require.NotNil(t, tm.exit)
		refused(t, b, map[string]any{"ticket": tk, "device": webDevice}, "used already")
	})
	t.Run("ticket for another device", func(t *testing.T) {
		_, tk := b.ticket(webDevice, csrf, b.origin)
		refused(t, b, map[string]any{"ticket": tk, "device": "d-other"}, "another device")
	})
	t.Run("ticket of another session", func(t *testing.T) {
		other := r.browser(t)
		require.Equal(t, http.StatusSeeOther, other.signIn(opsToken).StatusCode)
		_, tk := other.ticket(webDevice, other.csrf(), other.origin)
		refused(t, b, map[string]any{"ticket": tk, "device": webDevice}, "another session")
	})
	t.Run("forged ticket", func(t *testing.T) {
		refused(t, b, map[string]any{"ticket": "eyJzIjoiYSJ9.AAAA", "device": webDevice}, "bad signature")
	})
	t.Run("no ticket", func(t *testing.T) {
		refused(t, b, map[string]any{"device": webDevice}, "no ticket")
	})
	t.Run("ticket for a device the identity may not reach", func(t *testing.T) {
		lim := r.browser(t)
		require.Equal(t, http.StatusSeeOther, lim.signIn(limitedToken).StatusCode)
		code, _ := lim.ticket("x-other", lim.csrf(), lim.origin)
		require.Equal(t, http.StatusForbidden, code)
	})
	t.Run("PTY not allowed", func(t *testing.T) {
		lim := r.browser(t)
		require.Equal(t, http.StatusSeeOther, lim.signIn(limitedToken).StatusCode)
		_, tk := lim.ticket(webDevice, lim.csrf(), lim.origin)
		refused(t, lim, map[string]any{"ticket": tk, "device": webDevice}, "not allowed")
	})
	t.Run("logout revokes the cookie", func(t *testing.T) {
		lo := r.browser(t)
		require.Equal(t, http.StatusSeeOther, lo.signIn(opsToken).StatusCode)
		saved := *lo.cookie("tether_session")
		c := lo.csrf()
		// Sign-out from another origin, or without the token, does nothing.
		resp, _ := lo.do("POST", "/web/logout", url.Values{"csrf": {c}}, map[string]string{"Origin": "https://127.0.0.2"})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp, _ = lo.do("POST", "/web/logout", url.Values{}, map[string]string{"Origin": lo.origin})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp, _ = lo.do("GET", "/web/", nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)

		resp, _ = lo.do("POST", "/web/logout", url.Values{"csrf": {c}}, map[string]string{"Origin": lo.origin})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Nil(t, lo.cookie("tether_session"), "sign-out left the cookie")
		// The old cookie, put back, is refused.
		u, _ := url.Parse(lo.origin + "/web/")
		saved.Path, saved.Domain = "/web", ""
		lo.hc.Jar.SetCookies(u, []*http.Cookie{&saved})
		resp, _ = lo.do("GET", "/web/", nil, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/web/login", resp.Header.Get("Location"))
		code, _ := lo.ticket(webDevice, c, lo.origin)
		require.Equal(t, http.StatusUnauthorized, code)
		_, code, err := lo.dialWS(ctx, lo.origin)
		require.Error(t, err)
		require.Equal(t, http.StatusUnauthorized, code)
	})
	requireNoSecrets(t, r, opsToken, limitedToken, b.cookie("tether_session").Value)
	// Tickets are secrets too; none was logged or audited.
	_, tk := b.ticket(webDevice, csrf, b.origin)
	requireNoSecrets(t, r, tk)
}

// TestWebLimits: a browser session has at most MaxTerminalsPerSession
// terminals open at once.
func TestWebLimits(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{MaxTerminalsPerSession: 1})
	b := r.signedIn(t)
	ctx := ctxT(t)
	first := b.openTerm(ctx, webDevice, 80, 24)
	first.keys(ctx, "echo one-$((1+1))\r")
	first.expect(ctx, "one-2")
	second := b.openTerm(ctx, webDevice, 80, 24)
	second.drain(ctx)
	require.Contains(t, strings.Join(second.errs, "; "), "too many terminals")
	first.keys(ctx, "exit 0\r")
	first.drain(ctx)
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamDeny && e.Method == "web" && e.Result == "limit"
	})
}

// TestWebLimitsOnTheCluster: with Leases, a terminal holds a lease of its
// browser session, under MaxTerminalsPerSession, and one of its identity,
// under MaxTerminalsPerIdentity, until it ends; a lease refused or not to
// be had refuses the terminal, and returns the other.
func TestWebLimitsOnTheCluster(t *testing.T) {
	leases := &countedLeases{}
	r := newWebRig(t, edge.WebConfig{MaxTerminalsPerSession: 2, MaxTerminalsPerIdentity: 3, Leases: leases})
	b := r.signedIn(t)
	ctx := ctxT(t)
	term := b.openTerm(ctx, webDevice, 80, 24)
	term.keys(ctx, "echo held-$((1+1))\r")
	term.expect(ctx, "held-2")
	held := leases.snapshot()
	require.Equal(t, 1, held["identity ops:3"], "the open terminal's identity lease (name:cap): %v", held)
	var session string
	for k := range held {
		if m := regexp.MustCompile(`^session ([0-9a-f]{32}):2$`).FindStringSubmatch(k); m != nil {
			session = m[1]
		}
	}
	require.NotEmpty(t, session, "no lease of the browser session (ID:cap): %v", held)
	require.Len(t, held, 2, "leases other than the session's and the identity's: %v", held)
	term.keys(ctx, "exit 0\r")
	term.drain(ctx)
	require.Eventually(t, func() bool { return len(leases.snapshot()) == 0 }, 20*time.Second, 10*time.Millisecond,
		"the ended terminal kept its leases")

	for _, c := range []struct {
		kind    string
		failure error
		want    string
	}{
		{"session", nil, "this browser session has 2 open on the edges of the cluster"},
		{"identity", nil, "client ops has 3 open on the edges of the cluster"},
		{"session", errors.New("nats: no servers available"), "cannot count this browser session's terminals on the cluster (nats: no servers available); retry"},
		{"identity", errors.New("nats: timeout"), "cannot count client ops's terminals on the cluster (nats: timeout); retry"},
	} {
		leases.refuse(c.kind, c.failure)
		refused := b.openTerm(ctx, webDevice, 80, 24)
		refused.drain(ctx)
		require.Contains(t, strings.Join(refused.errs, "; "), c.want)
		require.Empty(t, leases.snapshot(), "a refused terminal kept a lease")
	}
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamDeny && e.Method == "web" && e.Result == "cluster_unavailable"
	})
}

// countedLeases is a WebTerminalLeases that counts the leases held, by
// kind, name and cap, and refuses those of one kind as told.
type countedLeases struct {
	mu      sync.Mutex
	held    map[string]int
	refused string // the kind refused, or ""
	failure error  // the refusal's error
}

func (l *countedLeases) Acquire(_ context.Context, identity string, max int) (func(), bool, error) {
	return l.take("identity", identity, max)
}

func (l *countedLeases) AcquireSession(_ context.Context, session string, max int) (func(), bool, error) {
	return l.take("session", session, max)
}

func (l *countedLeases) take(kind, name string, max int) (func(), bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kind == l.refused {
		return nil, false, l.failure
	}
	if l.held == nil {
		l.held = map[string]int{}
	}
	key := fmt.Sprintf("%s %s:%d", kind, name, max)
	l.held[key]++
	return sync.OnceFunc(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.held[key]--; l.held[key] == 0 {
			delete(l.held, key)
		}
	}), true, nil
}

// refuse refuses the leases of kind ("session" or "identity") from now
// on: with err, or as full when it is nil.
func (l *countedLeases) refuse(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused, l.failure = kind, err
}

func (l *countedLeases) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.held)
}

// TestWebDisabled: without Web the edge serves nothing under /web.
func TestWebDisabled(t *testing.T) {
	m := newEdge(t, mock.Options{})
	tr := &http.Transport{TLSClientConfig: m.ClientTLS()}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(m.URL() + "/web/login")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestWebConfigCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  edge.WebConfig
		want string
	}{
		{"short key", edge.WebConfig{PublicURL: "https://edge.example.com", Key: []byte("short")}, "at least 32"},
		{"http", edge.WebConfig{PublicURL: "http://edge.example.com", Key: webKey}, "https://HOST"},
		{"path", edge.WebConfig{PublicURL: "https://edge.example.com/x", Key: webKey}, "without a path"},
		{"negative", edge.WebConfig{PublicURL: "https://edge.example.com", Key: webKey, IdleTimeout: -1}, "negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Check()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
	require.NoError(t, (&edge.WebConfig{PublicURL: "https://edge.example.com:8443", Key: webKey}).Check())
}

// TestWebTerminalsEnd: a reload that takes the shell away, and a sign-out,
// close the open terminals, which hear why; a reload that drops the token
// ends the session.
func TestWebTerminalsEnd(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	ctx := ctxT(t)
	b := r.signedIn(t)

	tm := b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "echo up-$((1+1))\r")
	tm.expect(ctx, "up-2")
	rules := testRules()
	rules[0].PTY = false
	p, err := edge.NewStaticPolicy(rules)
	require.NoError(t, err)
	r.m.Server().Reload(p, nil)
	tm.drain(ctx)
	require.Contains(t, strings.Join(tm.errs, "; "), "may no longer open a shell")
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamClose && e.Method == "web" && e.Result == "revoked"
	})

	r.m.Server().Reload(testPolicy(t), nil)
	tm = b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "echo up-$((2+2))\r")
	tm.expect(ctx, "up-4")
	resp, _ := b.do("POST", "/web/logout", url.Values{"csrf": {b.csrf()}}, map[string]string{"Origin": b.origin})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	tm.drain(ctx)
	require.Contains(t, strings.Join(tm.errs, "; "), "signed out")

	// A reload that drops the token ends the session.
	require.Equal(t, http.StatusSeeOther, b.signIn(opsToken).StatusCode)
	b.csrf()
	p, err = edge.NewStaticPolicy(testRules()[1:])
	require.NoError(t, err)
	r.m.Server().Reload(p, nil)
	resp, _ = b.do("GET", "/web/", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/web/login", resp.Header.Get("Location"))
}

// TestWebSignOutBeforeTheFirstMessage: a WebSocket upgraded before its
// session signed out, whose first message comes after, opens no
// terminal, though its ticket was issued before the sign-out.
func TestWebSignOutBeforeTheFirstMessage(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	ctx := ctxT(t)
	b := r.signedIn(t)
	csrf := b.csrf()
	_, tk := b.ticket(webDevice, csrf, b.origin)
	c, code, err := b.dialWS(ctx, b.origin)
	require.NoError(t, err, "status %d", code)
	resp, _ := b.do("POST", "/web/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": b.origin})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	hello, _ := json.Marshal(map[string]any{"ticket": tk, "device": webDevice, "cols": 80, "rows": 24})
	require.NoError(t, c.Write(ctx, websocket.MessageText, hello))
	tm := &term{t: t, c: c, ack: true}
	// Refused, the WebSocket may be closing already: the write's error
	// does not matter.
	_ = c.Write(ctx, websocket.MessageBinary, []byte("echo open-$((1+1))\r"))
	for tm.next(ctx) && !strings.Contains(tm.out.String(), "open-2") {
	}
	require.NotContains(t, tm.out.String(), "open-2", "a signed-out session opened a terminal")
	require.Nil(t, tm.exit)
	require.Contains(t, strings.Join(tm.errs, "; "), "signed out")
}

// TestWebOpenEndsWithItsPage: a page that goes away while the device has
// not yet answered the terminal's open resets the device's stream at
// once, not at the open timeout.
func TestWebOpenEndsWithItsPage(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{}, func(o *mock.Options) { o.Transport = &transport.Config{OpenTimeout: time.Minute} })
	h, started, ended := unanswered()
	r.m.DeviceClientWithID("d-quiet").Handle(wire.MsgPTY, h)
	ctx := ctxT(t)
	b := r.signedIn(t)
	tm := b.openTerm(ctx, "d-quiet", 80, 24)
	waitFor(t, started, 20*time.Second, "the device's PTY handler did not start")
	require.NoError(t, tm.c.Close(websocket.StatusGoingAway, ""))
	err := waitFor(t, ended, 20*time.Second, "the device's stream did not end after the page went away")
	require.ErrorIs(t, err, transport.ErrStreamReset)
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamDeny && e.Method == "web" && e.Device == "d-quiet" && e.Result == "closed"
	})
}

// TestWebTerminalEndsWithItsSession: an open terminal ends when its
// session does, SessionLifetime after the sign-in, as a CLI session ends
// with its credential.
func TestWebTerminalEndsWithItsSession(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{SessionLifetime: 5 * time.Second})
	ctx := ctxT(t)
	b := r.signedIn(t)
	tm := b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "echo up-$((1+1))\r")
	tm.expect(ctx, "up-2")
	tm.drain(ctx)
	require.Nil(t, tm.exit)
	require.Contains(t, strings.Join(tm.errs, "; "), "expired")
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamClose && e.Method == "web" && e.Result == "expired"
	})
}

// failingRevocations is a WebRevocations whose store can be made
// unreachable.
type failingRevocations struct {
	edge.MemoryWebRevocations
	down atomic.Bool
}

func (f *failingRevocations) Revoke(ctx context.Context, id string, until time.Time) error {
	if f.down.Load() {
		return errors.New("the store is unreachable")
	}
	return f.MemoryWebRevocations.Revoke(ctx, id, until)
}

func (f *failingRevocations) Revoked(ctx context.Context, id string) (bool, error) {
	if f.down.Load() {
		return false, errors.New("the store is unreachable")
	}
	return f.MemoryWebRevocations.Revoked(ctx, id)
}

// TestWebSignOutWhileTheStoreIsDown: a sign-out that cannot be recorded
// is refused, with the cookie kept, so that the page can retry; it is
// never answered as if it had been done.
func TestWebSignOutWhileTheStoreIsDown(t *testing.T) {
	rev := &failingRevocations{}
	r := newWebRig(t, edge.WebConfig{Revoked: rev})
	b := r.signedIn(t)
	csrf := b.csrf()
	saved := *b.cookie("tether_session")

	rev.down.Store(true)
	resp, body := b.do("POST", "/web/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": b.origin})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a sign-out that was not recorded was answered %s", resp.Header.Get("Location"))
	require.Contains(t, body, "retry")
	require.NotNil(t, b.cookie("tether_session"), "a sign-out that was not recorded cleared the cookie")

	rev.down.Store(false)
	resp, _ = b.do("POST", "/web/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": b.origin})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	u, _ := url.Parse(b.origin + "/web/")
	saved.Path, saved.Domain = "/web", ""
	b.hc.Jar.SetCookies(u, []*http.Cookie{&saved})
	resp, _ = b.do("GET", "/web/", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the signed-out cookie still works")
}

// TestWebSessionUncheckedIsNotASignOut: while the sign-outs cannot be
// read, every page and request that needs the session answers 503 with
// the reason and keeps the cookie, rather than sending the browser to the
// sign-in page, which would not help; once the store is back, they work.
func TestWebSessionUncheckedIsNotASignOut(t *testing.T) {
	rev := &failingRevocations{}
	r := newWebRig(t, edge.WebConfig{Revoked: rev})
	b := r.signedIn(t)
	csrf := b.csrf()

	rev.down.Store(true)
	unchecked := func(what string, resp *http.Response, body string) {
		t.Helper()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s answered %s %s", what, resp.Status, resp.Header.Get("Location"))
		require.Contains(t, body, "cannot check your session now")
		require.Contains(t, body, "the store is unreachable")
		require.Equal(t, "5", resp.Header.Get("Retry-After"))
	}
	for _, path := range []string{"/web/", "/web/d/d-1", "/web/recordings", "/web/recordings/x.cast"} {
		resp, body := b.do("GET", path, nil, nil)
		unchecked(path, resp, body)
	}
	resp, body := b.do("POST", "/web/ticket?device=d-1", nil, map[string]string{"X-CSRF-Token": csrf, "Origin": b.origin})
	unchecked("a ticket", resp, body)
	_, code, err := b.dialWS(ctxT(t), b.origin)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, code, "the WebSocket")
	require.NotNil(t, b.cookie("tether_session"), "the cookie was cleared")

	rev.down.Store(false)
	resp, _ = b.do("GET", "/web/", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	code, _ = b.ticket("d-1", csrf, b.origin)
	require.Equal(t, http.StatusOK, code)
}

// TestWebTerminalAcrossTheCluster: a browser on one edge opens a terminal
// on a device that another edge holds, through the same open path as the
// CLI's; the cookie works on every edge, and a sign-out holds on every
// edge.
func TestWebTerminalAcrossTheCluster(t *testing.T) {
	rig := newClusterRig(t)
	rig.web = &edge.WebConfig{Key: webKey}
	rig.start("e1")
	rig.start("e2")
	srv := &pty.Server{Config: pty.Config{Enabled: true, Shell: "/bin/sh"}}
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	rig.device("e1", "d-1", map[wire.MsgType]device.Handler{wire.MsgPTY: srv.ServePTY, wire.MsgPTYCommand: srv.ServeCommand})
	rig.waitEverywhere("d-1", "e1")

	ctx := ctxT(t)
	b := newBrowser(t, rig.edges["e2"].url, rig.pki.ClientTLS())
	require.Equal(t, http.StatusSeeOther, b.signIn(opsToken).StatusCode)
	tm := b.openTerm(ctx, "d-1", 80, 24)
	tm.keys(ctx, "echo $((6*7))\r")
	tm.expect(ctx, `\b42\r\n`)
	tm.keys(ctx, "exit 5\r")
	tm.drain(ctx)
	require.NotNil(t, tm.exit, "errors: %v", tm.errs)
	require.Equal(t, 5, *tm.exit)
	require.Eventually(t, func() bool {
		for _, e := range rig.edges["e2"].audit.Events() {
			if e.Kind == edge.EventStreamClose && e.Method == "web" && e.Peer == "e1" && e.ExitCode != nil && *e.ExitCode == 5 {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "no stream_close record through e1 on e2")

	// The same cookie on e1 (cookies do not tell ports apart): stateless,
	// accepted; after a sign-out on e2, refused there too.
	on1 := func() int {
		req, err := http.NewRequest("GET", rig.edges["e1"].url+"/web/", nil)
		require.NoError(t, err)
		resp, err := b.hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	saved := *b.cookie("tether_session")
	require.Equal(t, http.StatusOK, on1())
	resp, _ := b.do("POST", "/web/logout", url.Values{"csrf": {b.csrf()}}, map[string]string{"Origin": b.origin})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	u, _ := url.Parse(rig.edges["e1"].url + "/web/")
	saved.Path, saved.Domain = "/web", ""
	b.hc.Jar.SetCookies(u, []*http.Cookie{&saved})
	require.Equal(t, http.StatusSeeOther, on1(), "e1 accepted a cookie signed out on e2")
}

// TestWebSignInFromAnEarlierTab: opening the sign-in page again, in
// another tab, leaves the form of the first one valid.
func TestWebSignInFromAnEarlierTab(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	b := r.browser(t)
	_, first := b.do("GET", "/web/login", nil, nil)
	_, second := b.do("GET", "/web/login", nil, nil)
	require.Equal(t, find(t, csrfField, first), find(t, csrfField, second))
	resp, page := b.do("POST", "/web/login", url.Values{"token": {opsToken}, "csrf": {find(t, csrfField, first)}}, map[string]string{"Origin": b.origin})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, page)
	require.NotNil(t, b.cookie("tether_session"))
}

// TestWebDeviceListFilter: the device list takes GET /api/devices's
// filters from its form, keeps what was asked in the form, and shows the
// error of a filter that does not parse, with no device.
func TestWebDeviceListFilter(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	for _, id := range []string{"gw-1", "gw-2"} {
		r.m.DeviceClientWithID(id)
	}
	b := r.signedIn(t)
	listed := func(query string) (int, string) {
		t.Helper()
		resp, page := b.do("GET", "/web/"+query, nil, nil)
		var ids []string
		for _, id := range []string{webDevice, "gw-1", "gw-2"} {
			if strings.Contains(page, `href="/web/d/`+id+`"`) {
				ids = append(ids, id)
			}
		}
		return resp.StatusCode, strings.Join(ids, " ") + "|" + page
	}
	code, got := listed("")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(got, webDevice+" gw-1 gw-2|"), "every device by default: %.300s", got)
	require.Contains(t, got, "3 devices")

	code, got = listed("?match=gw-*&labels=&status=online")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(got, "gw-1 gw-2|"), "match: %.300s", got)
	require.Contains(t, got, `name="match" value="gw-*"`, "the form keeps the filter")
	require.Contains(t, got, "<option selected>online</option>")
	require.Contains(t, got, `<a href="/web/">all devices</a>`)

	code, got = listed("?match=gw-2&labels=site%3Dnowhere&status=all")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(got, "|"), "labels: %.300s", got)
	require.Contains(t, got, "No device you may reach matches the filter.")

	code, got = listed("?status=offline")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(got, "|"), "status: %.300s", got)

	for query, want := range map[string]string{
		"?match=%5B":           "match pattern &#34;[&#34;",
		"?labels=%3D%3D":       "labels: ",
		"?status=sideways":     "status &#34;sideways&#34;: use online (the default), offline or all",
		"?match=a&match=b":     "may each be given once",
		"?match=gw-*&device=x": "unknown query parameter &#34;device&#34;",
	} {
		code, got = listed(query)
		require.Equal(t, http.StatusBadRequest, code, query)
		require.True(t, strings.HasPrefix(got, "|"), "%s listed devices: %.300s", query, got)
		require.Contains(t, got, want, query)
	}
}
