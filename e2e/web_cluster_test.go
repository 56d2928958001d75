package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
)

// webOrigin is the public URL of the test cluster's web terminal: every
// edge serves it, as behind a load balancer.
const webOrigin = "https://tether.test"

// TestClusterWebTerminal: in a three-edge cluster, a ticket issued on
// one edge opens one terminal on another and is refused on the third; the
// caps on a browser session's and on an identity's terminals count those
// of every edge; and a sign-out on one edge closes the session's
// terminals on the others, and no other session's.
func TestClusterWebTerminal(t *testing.T) {
	pki := certstest.New(t)
	key := filepath.Join(pki.Dir, "web.key")
	require.NoError(t, os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef-cluster"), 0o600))
	c := newClusterSys(t, clusterOpts{pki: pki,
		extra: "web: {enabled: true, public_url: \"" + webOrigin + "\", session_key_file: " + key + ", max_terminals_per_session: 2, max_terminals_per_identity: 3}\n"})
	dev := c.addAgents(1)[0]
	c.waitListed([]string{dev}, c.edges...)
	e1, e2, e3 := c.edges[0], c.edges[1], c.edges[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	b := newWebClient(t, c.pki.Pool(), webOrigin)
	b.signIn(e1.addr, c.token)
	csrf := b.csrf(e1.addr)

	// A ticket from edge 1 opens a terminal on edge 2, once.
	tk := b.ticket(e1.addr, dev, csrf)
	t2 := b.open(ctx, e2.addr, dev, tk)
	require.Equal(t, "open", t2.control(ctx).T)
	again := b.open(ctx, e3.addr, dev, tk)
	m := again.control(ctx)
	require.Equal(t, "error", m.T)
	require.Contains(t, m.Msg, "used already")

	// A second terminal, on edge 3; both answer.
	t3 := b.open(ctx, e3.addr, dev, b.ticket(e3.addr, dev, csrf))
	require.Equal(t, "open", t3.control(ctx).T)
	for _, tm := range []*webConn{t2, t3} {
		tm.keys(ctx, "echo up-$((40+2))\r")
		tm.expect(ctx, "up-42")
	}

	// The session has two terminals open, the most it may: edge 1, which
	// holds neither, refuses a third.
	t1 := b.open(ctx, e1.addr, dev, b.ticket(e1.addr, dev, csrf))
	m = t1.control(ctx)
	require.Equal(t, "error", m.T)
	require.Contains(t, m.Msg, "this browser session has 2 open on the edges of the cluster")
	// Another browser of the same client opens the client's third; its
	// fourth is refused, on the edge that holds that third.
	other := newWebClient(t, c.pki.Pool(), webOrigin)
	other.signIn(e2.addr, c.token)
	otherCSRF := other.csrf(e2.addr)
	o1 := other.open(ctx, e1.addr, dev, other.ticket(e2.addr, dev, otherCSRF))
	require.Equal(t, "open", o1.control(ctx).T)
	o2 := other.open(ctx, e1.addr, dev, other.ticket(e2.addr, dev, otherCSRF))
	m = o2.control(ctx)
	require.Equal(t, "error", m.T)
	require.Contains(t, m.Msg, "has 3 open on the edges of the cluster")

	// Once one of the first session's ends, edge 1 opens one for it.
	t3.keys(ctx, "exit\r")
	t3.expect(ctx, "")
	for {
		t1 = b.open(ctx, e1.addr, dev, b.ticket(e1.addr, dev, csrf))
		m = t1.control(ctx)
		if m.T == "open" {
			break
		}
		// The ended terminal's leases go as its edge closes it.
		require.Contains(t, m.Msg, "too many terminals")
		time.Sleep(50 * time.Millisecond)
	}

	// Signing out on edge 1 closes the first session's two, and not the
	// other's.
	b.signOut(e1.addr, csrf)
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	defer ocancel()
	for _, tm := range []*webConn{t2, t1} {
		tm.expect(octx, "")
		require.Contains(t, tm.lastErr, "signed out", "a terminal on another edge outlived the sign-out")
	}
	o1.keys(ctx, "echo still-$((40+2))\r")
	o1.expect(ctx, "still-42")
	// And the cookie no longer opens anything on any edge.
	for _, e := range c.edges {
		resp := b.do(e.addr, "GET", "/web/", nil, nil)
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "%s accepts a signed-out session", e.id)
	}
}

// webClient is a browser of a web terminal written in Go: one cookie jar
// for all edges (given by address), and requests that come from origin,
// the edges' public URL.
type webClient struct {
	t      testing.TB
	hc     *http.Client
	origin string
}

func newWebClient(t testing.TB, pool *x509.CertPool, origin string) *webClient {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &webClient{t: t, origin: origin, hc: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: certs.ClientTLSConfig(pool)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type webPage struct {
	StatusCode int
	Body       string
}

func (b *webClient) do(addr, method, path string, form url.Values, hdr map[string]string) webPage {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "https://"+addr+path, body)
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.hc.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(b.t, err)
	return webPage{resp.StatusCode, string(page)}
}

var csrfInput = regexp.MustCompile(`name="(?:csrf|tether-csrf)" (?:value|content)="([^"]+)"`)

func (b *webClient) field(page webPage) string {
	b.t.Helper()
	m := csrfInput.FindStringSubmatch(page.Body)
	require.NotNil(b.t, m, "no CSRF token in the page (status %d):\n%s", page.StatusCode, page.Body)
	return m[1]
}

func (b *webClient) signIn(addr string, token string) {
	b.t.Helper()
	csrf := b.field(b.do(addr, "GET", "/web/login", nil, nil))
	resp := b.do(addr, "POST", "/web/login", url.Values{"token": {token}, "csrf": {csrf}}, map[string]string{"Origin": b.origin})
	require.Equal(b.t, http.StatusSeeOther, resp.StatusCode, resp.Body)
}

func (b *webClient) csrf(addr string) string {
	b.t.Helper()
	return b.field(b.do(addr, "GET", "/web/", nil, nil))
}

func (b *webClient) signOut(addr string, csrf string) {
	b.t.Helper()
	resp := b.do(addr, "POST", "/web/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": b.origin})
	require.Equal(b.t, http.StatusSeeOther, resp.StatusCode, resp.Body)
}

func (b *webClient) ticket(addr string, device, csrf string) string {
	b.t.Helper()
	resp := b.do(addr, "POST", "/web/ticket?device="+url.QueryEscape(device), nil, map[string]string{"Origin": b.origin, "X-CSRF-Token": csrf})
	require.Equal(b.t, http.StatusOK, resp.StatusCode, resp.Body)
	var out struct{ Ticket string }
	require.NoError(b.t, json.Unmarshal([]byte(resp.Body), &out))
	return out.Ticket
}

// open dials e's WebSocket and sends the ticket.
func (b *webClient) open(ctx context.Context, addr string, device, ticket string) *webConn {
	b.t.Helper()
	c, _, err := websocket.Dial(ctx, "wss://"+addr+"/web/ws", &websocket.DialOptions{
		HTTPClient: b.hc, HTTPHeader: http.Header{"Origin": {b.origin}}})
	require.NoError(b.t, err)
	b.t.Cleanup(func() { c.CloseNow() })
	hello, _ := json.Marshal(map[string]any{"ticket": ticket, "device": device, "cols": 80, "rows": 24, "term": "xterm"})
	require.NoError(b.t, c.Write(ctx, websocket.MessageText, hello))
	return &webConn{t: b.t, c: c}
}

// webConn is one terminal's WebSocket; it acknowledges the output it
// reads.
type webConn struct {
	t       testing.TB
	c       *websocket.Conn
	out     strings.Builder
	lastErr string
}

type webMsg struct {
	T    string `json:"t"`
	Msg  string `json:"msg"`
	Code *int   `json:"code"`
}

// control returns the next control message.
func (w *webConn) control(ctx context.Context) webMsg {
	w.t.Helper()
	for {
		typ, b, err := w.c.Read(ctx)
		require.NoError(w.t, err)
		if typ == websocket.MessageBinary {
			w.out.Write(b)
			continue
		}
		var m webMsg
		require.NoError(w.t, json.Unmarshal(b, &m))
		return m
	}
}

func (w *webConn) keys(ctx context.Context, s string) {
	w.t.Helper()
	require.NoError(w.t, w.c.Write(ctx, websocket.MessageBinary, []byte(s)))
}

// expect reads until the output has want; with want "", until the
// connection ends.
func (w *webConn) expect(ctx context.Context, want string) {
	w.t.Helper()
	for want == "" || !strings.Contains(w.out.String(), want) {
		typ, b, err := w.c.Read(ctx)
		if err != nil {
			require.Empty(w.t, want, "the terminal ended before %q: %v\n%s", want, err, w.out.String())
			return
		}
		if typ == websocket.MessageBinary {
			w.out.Write(b)
			ack, _ := json.Marshal(map[string]any{"t": "ack", "n": len(b)})
			_ = w.c.Write(ctx, websocket.MessageText, ack) // fails once the edge closes
			continue
		}
		var m webMsg
		require.NoError(w.t, json.Unmarshal(b, &m))
		if m.T == "error" {
			w.lastErr = m.Msg
		}
	}
}
