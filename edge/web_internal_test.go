package edge

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testWebKey = []byte("0123456789abcdef0123456789abcdef")

func webServer(t *testing.T) *Server {
	t.Helper()
	p, err := NewStaticPolicy([]ClientRule{{Name: "ops", TokenSHA256: HashToken("ops-token-0123456789"), Devices: []string{"*"}, PTY: true}})
	require.NoError(t, err)
	s := &Server{Policy: p, Web: &WebConfig{PublicURL: "https://edge.example.com", Key: testWebKey}}
	s.init()
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.web.broken)
	return s
}

func sessionRequest(s *Server, sess webSession) *http.Request {
	r := httptest.NewRequest("GET", "https://edge.example.com/web/", nil)
	r.AddCookie(&http.Cookie{Name: webSessionCookie, Value: s.web.signer.seal("session", sess)})
	return r
}

func TestWebSessionTimes(t *testing.T) {
	s := webServer(t)
	sum := HashToken("ops-token-0123456789")
	cred := hex.EncodeToString(sum[:])
	now := time.Now()
	for _, tt := range []struct {
		name   string
		sess   webSession
		wantOK bool
		why    string
	}{
		{"fresh", webSession{V: 1, ID: randomHex(16), Method: webMethodToken, Cred: cred, Issued: now.Unix(), Active: now.Unix()}, true, ""},
		{"past its lifetime", webSession{V: 1, ID: randomHex(16), Method: webMethodToken, Cred: cred,
			Issued: now.Add(-DefaultWebSessionLifetime - time.Minute).Unix(), Active: now.Unix()}, false, "older than"},
		{"idle too long", webSession{V: 1, ID: randomHex(16), Method: webMethodToken, Cred: cred,
			Issued: now.Add(-time.Hour).Unix(), Active: now.Add(-DefaultWebIdleTimeout - time.Minute).Unix()}, false, "idle"},
		{"unknown credential", webSession{V: 1, ID: randomHex(16), Method: webMethodToken, Cred: strings.Repeat("0", 64),
			Issued: now.Unix(), Active: now.Unix()}, false, "no longer valid"},
		{"unknown method", webSession{V: 1, ID: randomHex(16), Method: "saml", Cred: "x", Issued: now.Unix(), Active: now.Unix()}, false, "method"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			me, err := s.webSessionFrom(nil, sessionRequest(s, tt.sess))
			if tt.wantOK {
				require.NoError(t, err)
				require.Equal(t, "ops", me.id.Name)
				return
			}
			require.ErrorIs(t, err, ErrWebSession)
			require.Contains(t, err.Error(), tt.why)
		})
	}
}

// A request refreshes a session's last-active time, which keeps the
// session from going idle; the refreshed cookie keeps its expiry.
func TestWebSessionRefresh(t *testing.T) {
	s := webServer(t)
	sum := HashToken("ops-token-0123456789")
	old := time.Now().Add(-10 * time.Minute).Unix()
	sess := webSession{V: 1, ID: randomHex(16), Method: webMethodToken, Cred: hex.EncodeToString(sum[:]), Issued: old, Active: old}
	w := httptest.NewRecorder()
	_, err := s.webSessionFrom(w, sessionRequest(s, sess))
	require.NoError(t, err)
	cookies := w.Result().Cookies()
	require.Len(t, cookies, 1)
	got, err := s.web.signer.decodeSession(cookies[0].Value)
	require.NoError(t, err)
	require.Equal(t, sess.ID, got.ID)
	require.Equal(t, old, got.Issued)
	require.Greater(t, got.Active, old)
	require.True(t, cookies[0].HttpOnly && cookies[0].Secure)
	require.Equal(t, http.SameSiteStrictMode, cookies[0].SameSite)
}

func TestWebTicketChecks(t *testing.T) {
	s := webServer(t)
	sid := randomHex(16)
	seal := func(tk webTicket) string { return s.web.signer.seal("ticket", tk) }
	fresh := time.Now().Add(webTicketLifetime).UnixMilli()
	for _, tt := range []struct {
		name, ticket, why string
	}{
		{"expired", seal(webTicket{Session: sid, Device: "d1", Nonce: randomHex(16), Expires: time.Now().Add(-time.Second).UnixMilli()}), "expired"},
		{"another session", seal(webTicket{Session: randomHex(16), Device: "d1", Nonce: randomHex(16), Expires: fresh}), "another session"},
		{"signed for another purpose", s.web.signer.seal("session", webTicket{Session: sid, Device: "d1", Nonce: randomHex(16), Expires: fresh}), "bad signature"},
		{"too long", strings.Repeat("a", maxWebTicket+1), "more than"},
		{"no signature", "eyJzIjoiYSJ9", "malformed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.redeemTicket(context.Background(), tt.ticket, sid)
			require.ErrorIs(t, err, ErrWebTicket)
			require.Contains(t, err.Error(), tt.why)
		})
	}
	good := seal(webTicket{Session: sid, Device: "d1", Nonce: randomHex(16), Expires: fresh})
	tk, err := s.redeemTicket(context.Background(), good, sid)
	require.NoError(t, err)
	require.Equal(t, "d1", tk.Device)
	_, err = s.redeemTicket(context.Background(), good, sid)
	require.ErrorContains(t, err, "used already")

	// Tickets that cannot be checked as unused are refused.
	s.web.tickets = brokenTickets{}
	_, err = s.redeemTicket(context.Background(), seal(webTicket{Session: sid, Device: "d1", Nonce: randomHex(16), Expires: fresh}), sid)
	require.ErrorIs(t, err, ErrWebTicket)
	require.ErrorContains(t, err, "cannot check that it is unused")
}

type brokenTickets struct{}

func (brokenTickets) Use(context.Context, string, time.Time) (bool, error) {
	return false, ErrClusterUnavailable
}

func TestMemoryWebRevocations(t *testing.T) {
	var m MemoryWebRevocations
	require.NoError(t, m.Revoke(t.Context(), "a", time.Now().Add(time.Hour)))
	require.NoError(t, m.Revoke(t.Context(), "b", time.Now().Add(-time.Second)))
	for id, want := range map[string]bool{"a": true, "b": false, "c": false} {
		got, err := m.Revoked(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, want, got, "revoked(%s)", id)
	}
}

// FuzzWebSessionCookie: whatever a browser sends as its cookie, decoding
// fails cleanly or yields a well-formed session, and a decoded session
// seals back to a value that decodes to the same.
func FuzzWebSessionCookie(f *testing.F) {
	k := webSigner{key: testWebKey}
	f.Add(k.seal("session", webSession{V: 1, ID: strings.Repeat("a", 32), Method: "token", Cred: "00", Issued: 1, Active: 2}))
	f.Add("")
	f.Add(".")
	f.Add("e30.AAAA")
	f.Add(strings.Repeat("A", 2000))
	f.Fuzz(func(t *testing.T, v string) {
		s, err := k.decodeSession(v)
		if err != nil {
			return
		}
		require.Len(t, s.ID, 32)
		again, err := k.decodeSession(k.seal("session", s))
		require.NoError(t, err)
		require.Equal(t, s, again)
	})
}

// FuzzWebMessages: the page's first message and its control messages are
// checked without a panic, and what passes is in range.
func FuzzWebMessages(f *testing.F) {
	f.Add([]byte(`{"ticket":"x.y","device":"d1","cols":80,"rows":24,"term":"xterm-256color"}`))
	f.Add([]byte(`{"t":"resize","cols":100,"rows":30}`))
	f.Add([]byte(`{"t":"ack","n":32768}`))
	f.Add([]byte(`{"t":"ack","n":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeWebHello(b); err == nil {
			require.NotEmpty(t, h.Ticket)
			require.True(t, h.Cols >= 0 && h.Cols <= 10000 && h.Rows >= 0 && h.Rows <= 10000)
		}
		if c, err := decodeWebControl(b); err == nil {
			switch c.T {
			case "ack":
				require.GreaterOrEqual(t, c.N, int64(0))
			case "resize":
				require.True(t, c.Cols >= 1 && c.Rows >= 1)
			default:
				t.Fatalf("control message %q accepted", c.T)
			}
		}
	})
}

func TestWebStaticGzip(t *testing.T) {
	s := webServer(t)
	for _, tt := range []struct {
		accept string
		gzip   bool
	}{{"gzip, deflate, br", true}, {"br;q=1, gzip;q=0", false}, {"", false}, {"GZIP", true}} {
		r := httptest.NewRequest("GET", "https://edge.example.com/web/static/xterm.js", nil)
		r.Header.Set("Accept-Encoding", tt.accept)
		w := httptest.NewRecorder()
		s.serveWebStatic(w, r)
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, tt.gzip, w.Header().Get("Content-Encoding") == "gzip", "Accept-Encoding %q", tt.accept)
		require.Equal(t, "text/javascript; charset=utf-8", w.Header().Get("Content-Type"))
	}
	r := httptest.NewRequest("GET", "https://edge.example.com/web/static/../templates/login.html", nil)
	w := httptest.NewRecorder()
	s.serveWebStatic(w, r)
	require.Equal(t, http.StatusNotFound, w.Code)
}

// The output window: room waits while webMaxUnacked is out, and an ack
// frees it; acks beyond what was sent to the page free nothing more.
func TestWebTermRoom(t *testing.T) {
	term := &webTerm{more: make(chan struct{})}
	require.NoError(t, term.room(t.Context()))
	term.sent(webMaxUnacked)
	done := make(chan error, 1)
	go func() { done <- term.room(t.Context()) }()
	select {
	case err := <-done:
		t.Fatalf("room returned (%v) with %d bytes unacknowledged", err, webMaxUnacked)
	case <-time.After(50 * time.Millisecond):
	}
	// Output read but not yet sent cannot be acknowledged.
	term.ack(webMaxUnacked)
	select {
	case err := <-done:
		t.Fatalf("room returned (%v) after an ack of output the page was not sent", err)
	case <-time.After(50 * time.Millisecond):
	}
	term.shown(webMaxUnacked)
	term.ack(1)
	require.NoError(t, <-done)
	term.ack(10 * webMaxUnacked)
	term.sent(webMaxUnacked - 1)
	require.NoError(t, term.room(t.Context()), "an over-ack must not leave credit")
	term.sent(1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.Error(t, term.room(ctx))
}

// TestWebOutputGathers: output that arrives while the bridge is busy goes
// in one message of at most the limit, in order, and the read's end comes
// after all of it.
func TestWebOutputGathers(t *testing.T) {
	o := newWebQueue()
	o.add([]byte("abc"))
	o.add([]byte("def"))
	o.add([]byte("ghij"))
	o.finish(io.EOF)
	ctx := context.Background()
	got, err := o.take(ctx, nil, 8)
	require.NoError(t, err)
	require.Equal(t, "abcdefgh", string(got))
	got, err = o.take(ctx, got[:0], 8)
	require.NoError(t, err)
	require.Equal(t, "ij", string(got))
	got, err = o.take(ctx, got[:0], 8)
	require.ErrorIs(t, err, io.EOF)
	require.Empty(t, got)

	// A take that waits ends with its context, with the cause.
	o = newWebQueue()
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(errWebSignedOut)
	_, err = o.take(cctx, nil, 8)
	require.ErrorIs(t, err, errWebSignedOut)
}

// A public URL with the default port names the origin browsers send
// without it.
func TestWebOriginDefaultPort(t *testing.T) {
	p, err := NewStaticPolicy([]ClientRule{{Name: "ops", TokenSHA256: HashToken("ops-token-0123456789"), Devices: []string{"*"}, PTY: true}})
	require.NoError(t, err)
	s := &Server{Policy: p, Web: &WebConfig{PublicURL: "https://Edge.example.com:443", Key: testWebKey}}
	s.init()
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.web.broken)
	r := httptest.NewRequest("POST", "https://edge.example.com/web/ticket", nil)
	r.Header.Set("Origin", "https://edge.example.com")
	w := httptest.NewRecorder()
	require.True(t, s.checkOrigin(w, r), "refused: %s", w.Body.String())
	r.Header.Set("Origin", "https://edge.example.com:8443")
	require.False(t, s.checkOrigin(httptest.NewRecorder(), r))
}

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"gzip":                    true,
		"gzip, deflate, br, zstd": true,
		"br;q=1.0, GZIP;q=0.5":    true,
		"gzip;q=0":                false,
		"gzip;q=0.0":              false,
		"gzip; Q=0.000":           false,
		"gzip;q=oops":             false,
		"identity":                false,
		"":                        false,
		"x-gzip":                  false,
	} {
		require.Equal(t, want, acceptsGzip(v), "%q", v)
	}
}

// TestHeldTail: a download's body holds its last byte back until flush,
// however it is written, and loses none.
func TestHeldTail(t *testing.T) {
	var out bytes.Buffer
	h := &heldTail{w: &out}
	for _, p := range []string{"ab", "", "c", "defg"} {
		n, err := h.Write([]byte(p))
		if err != nil || n != len(p) {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if out.String() != "abcdef" {
		t.Fatalf("before flush: %q; want all but the last byte", out.String())
	}
	if err := h.flush(); err != nil || out.String() != "abcdefg" {
		t.Fatalf("after flush: %q, %v", out.String(), err)
	}
	if err := h.flush(); err != nil || out.String() != "abcdefg" {
		t.Fatalf("a second flush: %q, %v", out.String(), err)
	}
}
