package edge

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport/labels"
	"github.com/tetherhq/tether/web"
)

// WebConfig turns on the web terminal under /web/: a device list and a
// terminal per device, for the identities of the policy, who sign in with
// their client token. Terminals open through the same path as the CLI's
// shells: the policy, the audit (method "web"), the limits and, in a
// cluster, the edge that holds the device.
type WebConfig struct {
	// PublicURL is the origin browsers reach the edge at,
	// "https://edge.example.com" or "https://host:port", without a path.
	// Every state-changing request and every WebSocket must come from
	// exactly this origin.
	PublicURL string
	// Key signs the session cookies, CSRF tokens and tickets
	// (HMAC-SHA256); at least 32 bytes. Every edge of a cluster has the
	// same key, so that any of them accepts a session.
	Key []byte
	// SessionLifetime bounds a session from its sign-in. Default 8h.
	SessionLifetime time.Duration
	// IdleTimeout ends a session that made no request for this long.
	// Default 30m.
	IdleTimeout time.Duration
	// MaxTerminalsPerSession caps the open terminals of one browser
	// session; default 4. MaxTerminalsPerIdentity caps those of one
	// identity, across its sessions; default 16. Both count on this edge
	// and, with Leases, on every edge sharing them.
	MaxTerminalsPerSession  int
	MaxTerminalsPerIdentity int
	// Revoked holds the sessions that signed out. Nil keeps them in
	// memory on this edge (MemoryWebRevocations), which forgets them when
	// it restarts; FileWebRevocations keeps them in a file. When it is also a
	// WebRevocationWatcher, as a cluster's is, a sign-out on any edge
	// closes the session's terminals on this one.
	Revoked WebRevocations
	// Tickets records the terminal tickets used, so that each opens one
	// terminal. Nil keeps them in memory on this edge; a cluster shares
	// them, so that a ticket is used once on all its edges.
	Tickets WebTickets
	// Leases counts each identity's and each browser session's
	// terminals on all the edges that share it, against the caps above.
	// Nil counts them on this edge alone; a cluster shares them.
	Leases WebTerminalLeases
}

// WebConfig defaults.
const (
	DefaultWebSessionLifetime     = 8 * time.Hour
	DefaultWebIdleTimeout         = 30 * time.Minute
	DefaultWebTerminalsPerSession = 4
	DefaultWebTerminalsPerID      = 16
	// WebTicketLifetime is how long a terminal's ticket may be used
	// after it was issued; a WebTickets need not remember a ticket longer.
	WebTicketLifetime = 30 * time.Second
	// MinWebKeyBytes is the shortest WebConfig.Key accepted.
	MinWebKeyBytes = 32
)

// The web terminal's fixed bounds.
const (
	webTicketLifetime = WebTicketLifetime
	webMaxForm        = 4 << 10 // bytes of a sign-in or sign-out form
	// webActiveStep is how stale a session's last-active time may get
	// before a request refreshes the cookie.
	webActiveStep = time.Minute
	// webLoginLifetime bounds the sign-in form's pre-session cookie.
	webLoginLifetime = 10 * time.Minute
)

// Cookie names. Both are HttpOnly, Secure, SameSite=Strict and Path=/web.
const (
	webSessionCookie = "tether_session"
	webLoginCookie   = "tether_login"
)

// Check returns what is wrong with c, or nil.
func (c *WebConfig) Check() error {
	if _, err := webOrigin(c.PublicURL); err != nil {
		return err
	}
	if len(c.Key) < MinWebKeyBytes {
		return fmt.Errorf("web: the session key has %d bytes; it needs at least %d random bytes (head -c 32 /dev/urandom > KEYFILE)", len(c.Key), MinWebKeyBytes)
	}
	if c.SessionLifetime < 0 || c.IdleTimeout < 0 || c.MaxTerminalsPerSession < 0 || c.MaxTerminalsPerIdentity < 0 {
		return errors.New("web: lifetimes and terminal caps must not be negative (0 keeps the default)")
	}
	return nil
}

// webOrigin returns the origin of a public URL: scheme://host[:port].
func webOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("web: public URL %q must be https://HOST or https://HOST:PORT, the address browsers open, without a path", raw)
	}
	// Browsers leave the default port out of the Origin they send.
	host := u.Host
	if u.Port() == "443" {
		host = strings.TrimSuffix(host, ":443")
	}
	return "https://" + strings.ToLower(host), nil
}

// webState is the running web terminal of a Server.
type webState struct {
	origin    string
	host      string // origin's host[:port], for the WebSocket's own origin check
	signer    webSigner
	lifetime  time.Duration
	idle      time.Duration
	perSess   int
	perID     int
	revoked   WebRevocations
	tickets   WebTickets
	leases    WebTerminalLeases // nil: this edge's count alone
	pages     *template.Template
	files     map[string]webFile // /web/static/<name>
	broken    error              // the configuration's problem: every /web request gets 503
	termCount sync.Mutex
	// termCount guards the following.
	bySession map[string]int
	byID      map[string]int
	terms     map[*webTerm]struct{}
	transfers map[*webTerm]struct{} // file transfers (webfiles.go), not counted as terminals
}

func newWebState(c *WebConfig) *webState {
	w := &webState{bySession: map[string]int{}, byID: map[string]int{}, terms: map[*webTerm]struct{}{}, transfers: map[*webTerm]struct{}{}}
	if err := c.Check(); err != nil {
		w.broken = err
		return w
	}
	w.origin, _ = webOrigin(c.PublicURL)
	w.host = strings.TrimPrefix(w.origin, "https://")
	w.signer = webSigner{key: append([]byte(nil), c.Key...)}
	w.lifetime = cmpOr(c.SessionLifetime, DefaultWebSessionLifetime)
	w.idle = cmpOr(c.IdleTimeout, DefaultWebIdleTimeout)
	w.perSess = cmpOr(c.MaxTerminalsPerSession, DefaultWebTerminalsPerSession)
	w.perID = cmpOr(c.MaxTerminalsPerIdentity, DefaultWebTerminalsPerID)
	w.revoked = c.Revoked
	if w.revoked == nil {
		w.revoked = &MemoryWebRevocations{}
	}
	w.leases = c.Leases
	w.tickets = c.Tickets
	if w.tickets == nil {
		w.tickets = &MemoryWebTickets{}
	}
	w.pages = template.Must(template.ParseFS(web.Files, "templates/*.html"))
	files, err := loadWebFiles()
	if err != nil {
		w.broken = fmt.Errorf("web: the embedded files: %w", err)
		return w
	}
	w.files = files
	return w
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// webIdentity is a signed-in browser session checked on this request.
type webIdentity struct {
	sess webSession
	id   Identity
	auth *authState
}

// webMethods turn a session's credential back into an identity under the
// policy of now; a credential the policy no longer knows ends the session.
var webMethods = map[string]func(st *authState, cred string) (Identity, bool){
	webMethodToken: func(st *authState, cred string) (Identity, bool) {
		ha, ok := st.policy.(HashAuthenticator)
		if !ok {
			return Identity{}, false
		}
		b, err := hex.DecodeString(cred)
		if err != nil || len(b) != sha256.Size {
			return Identity{}, false
		}
		return ha.AuthenticateHash([sha256.Size]byte(b))
	},
}

// errWebUnchecked: the sign-outs could not be read, so the session may be
// valid, or signed out.
var errWebUnchecked = errors.New("cannot check it")

// webSessionFrom checks the request's session cookie and, when it is
// valid, refreshes its last-active time on w.
func (s *Server) webSessionFrom(w http.ResponseWriter, r *http.Request) (webIdentity, error) {
	ws := s.web
	c, err := r.Cookie(webSessionCookie)
	if err != nil {
		return webIdentity{}, ErrWebSession
	}
	sess, err := ws.signer.decodeSession(c.Value)
	if err != nil {
		return webIdentity{}, fmt.Errorf("%w: %v", ErrWebSession, err)
	}
	now := time.Now()
	if now.After(time.Unix(sess.Issued, 0).Add(ws.lifetime)) {
		return webIdentity{}, fmt.Errorf("%w: it is older than %v; sign in again", ErrWebSession, ws.lifetime)
	}
	if now.After(time.Unix(sess.Active, 0).Add(ws.idle)) {
		return webIdentity{}, fmt.Errorf("%w: it was idle for more than %v; sign in again", ErrWebSession, ws.idle)
	}
	ctx, cancel := context.WithTimeout(r.Context(), webStateTimeout)
	revoked, err := ws.revoked.Revoked(ctx, sess.ID)
	cancel()
	if err != nil {
		return webIdentity{}, fmt.Errorf("%w: %w (%v); retry", ErrWebSession, errWebUnchecked, err)
	}
	if revoked {
		return webIdentity{}, fmt.Errorf("%w: it was signed out", ErrWebSession)
	}
	method, ok := webMethods[sess.Method]
	if !ok {
		return webIdentity{}, fmt.Errorf("%w: unknown sign-in method", ErrWebSession)
	}
	st := s.auth.Load()
	id, ok := method(st, sess.Cred)
	if !ok {
		return webIdentity{}, fmt.Errorf("%w: its credential is no longer valid", ErrWebSession)
	}
	if w != nil && now.Sub(time.Unix(sess.Active, 0)) > webActiveStep {
		sess.Active = now.Unix()
		s.setWebSession(w, sess)
	}
	return webIdentity{sess: sess, id: id, auth: st}, nil
}

// webPageSession is webSessionFrom for a page: a request without a valid
// session goes to the sign-in page, and one whose session cannot be
// checked now gets a 503 that says so, since signing in again would not
// help. It reports whether the page may go on.
func (s *Server) webPageSession(w http.ResponseWriter, r *http.Request) (webIdentity, bool) {
	me, err := s.webSessionFrom(w, r)
	switch {
	case errors.Is(err, errWebUnchecked):
		webUnchecked(w, err)
		return me, false
	case err != nil:
		http.Redirect(w, r, "/web/login", http.StatusSeeOther)
		return me, false
	}
	return me, true
}

// webUnchecked answers a request whose session cannot be checked (err
// wraps errWebUnchecked): 503, to be retried, with the cookie kept.
func webUnchecked(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", "5")
	http.Error(w, "cannot check your session now ("+err.Error()+"); retry in a moment", http.StatusServiceUnavailable)
}

func (s *Server) setWebSession(w http.ResponseWriter, sess webSession) {
	http.SetCookie(w, &http.Cookie{Name: webSessionCookie, Value: s.web.signer.seal("session", sess), Path: "/web",
		Expires: time.Unix(sess.Issued, 0).Add(s.web.lifetime), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/web", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// webCSP is the Content-Security-Policy of every /web response; the
// terminal page adds a nonce for the style elements xterm.js creates.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'%s; img-src 'self'; font-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func webHeaders(w http.ResponseWriter, styleNonce string) {
	h := w.Header()
	extra := ""
	if styleNonce != "" {
		extra = " 'nonce-" + styleNonce + "'"
	}
	h.Set("Content-Security-Policy", fmt.Sprintf(webCSP, extra))
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
}

// webAmbiguity is ambiguity for /web: the sign-in and sign-out forms have
// a small body; the rest is as strict as on the other endpoints.
func webAmbiguity(r *http.Request, folded bool) (code int, msg string) {
	switch {
	case folded, len(r.Header.Values("Authorization")) > 1, len(r.TransferEncoding) > 0:
		return http.StatusBadRequest, ambiguity(r, folded)
	case r.ContentLength > webMaxForm && !(r.Method == http.MethodPut && r.URL.Path == "/web/upload"):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body has %d bytes; a form here takes at most %d", r.ContentLength, webMaxForm)
	}
	return 0, ""
}

// serveWeb routes /web and everything under it.
func (s *Server) serveWeb(w http.ResponseWriter, r *http.Request, folded bool) {
	if r.ContentLength != 0 {
		// The head scanner (Listener) assumes no body: end the connection
		// after this request.
		w.Header().Set("Connection", "close")
	}
	if code, msg := webAmbiguity(r, folded); code != 0 {
		w.Header().Set("Connection", "close")
		s.refuse(w, r, code, "ambiguous_request", msg)
		return
	}
	ws := s.web
	if ws.broken != nil {
		http.Error(w, "the web terminal is misconfigured: "+ws.broken.Error(), http.StatusServiceUnavailable)
		return
	}
	if !s.admitAPI(w, r) {
		return
	}
	p := r.URL.Path
	switch {
	case p == "/web":
		http.Redirect(w, r, "/web/", http.StatusMovedPermanently)
	case p == "/web/":
		s.webOnly(w, r, http.MethodGet, s.serveWebList)
	case p == "/web/login":
		s.serveWebLogin(w, r)
	case p == webSSOPath || len(p) > len(webSSOPath) && p[:len(webSSOPath)+1] == webSSOPath+"/":
		s.serveWebSSO(w, r)
	case p == "/web/logout":
		s.webOnly(w, r, http.MethodPost, s.serveWebLogout)
	case p == "/web/ticket":
		s.webOnly(w, r, http.MethodPost, s.serveWebTicket)
	case p == "/web/ws":
		s.webOnly(w, r, http.MethodGet, s.serveWebSocket)
	case strings.HasPrefix(p, "/web/static/"):
		s.webOnly(w, r, http.MethodGet, s.serveWebStatic)
	case strings.HasPrefix(p, "/web/d/"):
		s.webOnly(w, r, http.MethodGet, s.serveWebTerminalPage)
	case strings.HasPrefix(p, "/web/files/"):
		s.webOnly(w, r, http.MethodGet, s.serveWebFilesPage)
	case p == "/web/download":
		s.webOnly(w, r, http.MethodGet, s.serveWebDownload)
	case p == "/web/upload":
		s.webOnly(w, r, http.MethodPut, s.serveWebUpload)
	case p == "/web/recordings" || strings.HasPrefix(p, "/web/recordings/"):
		s.webOnly(w, r, http.MethodGet, s.serveWebRecordings)
	default:
		webHeaders(w, "")
		http.NotFound(w, r)
	}
}

func (s *Server) webOnly(w http.ResponseWriter, r *http.Request, method string, h http.HandlerFunc) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, "use "+method, http.StatusMethodNotAllowed)
		return
	}
	h(w, r)
}

// checkOrigin reports whether a state-changing request comes from the
// public URL's origin; otherwise it answers 403.
func (s *Server) checkOrigin(w http.ResponseWriter, r *http.Request) bool {
	o := r.Header.Get("Origin")
	if len(r.Header.Values("Origin")) == 1 && o == s.web.origin {
		return true
	}
	s.refuse(w, r, http.StatusForbidden, "bad_origin",
		fmt.Sprintf("cross-origin request refused: this request must come from a page of %s", s.web.origin), "origin", truncate(o, 100))
	return false
}

func (s *Server) render(w http.ResponseWriter, code int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := s.web.pages.ExecuteTemplate(w, name, data); err != nil {
		s.log.Warn("web page not rendered", "page", name, "err", err)
	}
}

// serveWebLogin serves the sign-in form (GET) and signs in (POST) with a
// client token.
func (s *Server) serveWebLogin(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	ws := s.web
	switch r.Method {
	case http.MethodGet:
		s.renderLogin(w, r, http.StatusOK, "")
	case http.MethodPost:
		if !s.checkOrigin(w, r) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, webMaxForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "the sign-in form could not be read; reload the page and sign in again", http.StatusBadRequest)
			return
		}
		c, err := r.Cookie(webLoginCookie)
		if err != nil || !checkToken(r.PostForm.Get("csrf"), ws.signer.loginCSRF(c.Value)) {
			s.refuse(w, r, http.StatusForbidden, "bad_csrf", "the sign-in form expired or did not come from this edge; reload the page and sign in again")
			return
		}
		tok := strings.TrimSpace(r.PostForm.Get("token"))
		st := s.auth.Load()
		id, ok := Identity{}, false
		if tok != "" {
			id, ok = st.policy.Authenticate(tok)
		}
		if !ok {
			s.auditRejected(Event{Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Method: "web", Result: "bad_token"})
			s.log.Info("web sign-in refused: unknown token", "remote", r.RemoteAddr)
			s.renderLogin(w, r, http.StatusUnauthorized, "Unknown token: check the token you were given.")
			return
		}
		if _, ok := st.policy.(HashAuthenticator); !ok {
			http.Error(w, "this edge's policy cannot keep web sessions; use the CLI", http.StatusServiceUnavailable)
			return
		}
		now := time.Now().Unix()
		sum := HashToken(tok)
		sess := webSession{V: 1, ID: randomHex(16), Method: webMethodToken, Cred: hex.EncodeToString(sum[:]), Issued: now, Active: now}
		s.setWebSession(w, sess)
		clearCookie(w, webLoginCookie)
		s.audit.Audit(Event{Time: time.Now(), Kind: EventWebSignIn, Client: id.Name, Auth: id.method(), RemoteAddr: r.RemoteAddr, Method: "web", Result: "ok"})
		s.log.Info("web sign-in", "client", id.Name, "remote", r.RemoteAddr)
		http.Redirect(w, r, "/web/", http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	// One nonce per browser: the form of a sign-in page opened earlier,
	// in another tab, stays valid.
	nonce := randomHex(16)
	if c, err := r.Cookie(webLoginCookie); err == nil && len(c.Value) == len(nonce) && validStateKey(c.Value) {
		nonce = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: webLoginCookie, Value: nonce, Path: "/web", MaxAge: int(webLoginLifetime / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	s.render(w, code, "login.html", map[string]any{"CSRF": s.web.signer.loginCSRF(nonce), "Error": msg, "SSO": s.webSSOEnabled()})
}

// serveWebLogout revokes the session until its cookie would have expired.
func (s *Server) serveWebLogout(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	if !s.checkOrigin(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, webMaxForm)
	_ = r.ParseForm()
	me, err := s.webSessionFrom(nil, r)
	if errors.Is(err, errWebUnchecked) {
		// The session may well be valid: clearing this copy of its
		// cookie would look like a sign-out that other copies outlive.
		http.Error(w, "cannot sign out now ("+err.Error()+")", http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		clearCookie(w, webSessionCookie)
		http.Redirect(w, r, "/web/login", http.StatusSeeOther)
		return
	}
	if !checkToken(r.PostForm.Get("csrf"), s.web.signer.csrf(me.sess.ID)) && !checkToken(r.Header.Get("X-CSRF-Token"), s.web.signer.csrf(me.sess.ID)) {
		s.refuse(w, r, http.StatusForbidden, "bad_csrf", "the sign-out request did not come from a page of this edge; reload the page")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), webStateTimeout)
	err = s.web.revoked.Revoke(ctx, me.sess.ID, time.Unix(me.sess.Issued, 0).Add(s.web.lifetime))
	cancel()
	if err != nil {
		http.Error(w, "cannot sign out now ("+err.Error()+"); retry", http.StatusServiceUnavailable)
		return
	}
	s.endWebTerminals(me.sess.ID, "the session signed out")
	clearCookie(w, webSessionCookie)
	s.audit.Audit(Event{Time: time.Now(), Kind: EventWebSignOut, Client: me.id.Name, Auth: me.id.method(), RemoteAddr: r.RemoteAddr, Method: "web", Result: "ok"})
	http.Redirect(w, r, "/web/login", http.StatusSeeOther)
}

// webDeviceRow is a line of the device list page.
type webDeviceRow struct {
	ID, Status, Edge, When, Agent string
	// Labels are the device's labels, "k=v,k2=v2".
	Labels string
	Online bool
}

func (s *Server) serveWebList(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	me, ok := s.webPageSession(w, r)
	if !ok {
		return
	}
	// The page's filter is GET /api/devices's query (match, labels,
	// status), with every device, online and offline, by default. A
	// filter that does not parse shows its error and no device.
	q := r.URL.Query()
	filter := webListFilter{Match: q.Get("match"), Labels: q.Get("labels"), Status: q.Get("status")}
	if filter.Status == "" {
		filter.Status = statusAll
		q.Set("status", statusAll)
	}
	hdr := http.Header{}
	var list []deviceInfo
	status := http.StatusOK
	dq, err := parseDeviceQuery(q)
	if err != nil {
		status = http.StatusBadRequest
		filter.Error = err.Error()
	} else {
		list = s.listDevices(r.Context(), dq,
			func(dev DeviceRef) bool { return dq.matches(dev) && me.auth.policy.DeviceAllowed(me.id, dev) }, hdr)
	}
	rows := make([]webDeviceRow, 0, len(list))
	for _, d := range list {
		row := webDeviceRow{ID: d.ID, Status: d.Status, Edge: d.Edge, Online: d.Status == statusOnline, Labels: labels.Set(d.Labels).String()}
		switch {
		case d.ConnectedSince != nil:
			row.When = "since " + d.ConnectedSince.Format(time.RFC3339)
		case d.LastSeen != nil:
			row.When = "last seen " + d.LastSeen.Format(time.RFC3339)
		}
		row.Agent = strings.TrimSpace(d.AgentInfo.Version)
		rows = append(rows, row)
	}
	notice := strings.TrimSpace(strings.Join([]string{hdr.Get("Tether-Cluster"), hdr.Get("Tether-Last-Seen")}, " "))
	s.render(w, status, "list.html", map[string]any{"Identity": me.id.Name, "CSRF": s.web.signer.csrf(me.sess.ID), "Devices": rows, "Notice": notice,
		"Filter": filter, "Filtered": filter.Match != "" || filter.Labels != "" || filter.Status != statusAll,
		"Recordings": canReadRecordings(me.auth.policy, me.id)})
}

// webListFilter is the device list's filter form, as sent, with what is
// wrong with it.
type webListFilter struct {
	Match, Labels, Status string
	Error                 string
}

func (s *Server) serveWebTerminalPage(w http.ResponseWriter, r *http.Request) {
	nonce := randomHex(16)
	webHeaders(w, nonce)
	me, ok := s.webPageSession(w, r)
	if !ok {
		return
	}
	device := strings.TrimPrefix(r.URL.Path, "/web/d/")
	if certs.ValidDeviceID(device) != nil {
		http.Error(w, "not a device ID: 1 to 128 letters, digits, '.', '-', '_' and ':'", http.StatusBadRequest)
		return
	}
	if dev := s.deviceRef(me.auth.policy, device); !me.auth.policy.DeviceAllowed(me.id, dev) {
		http.Error(w, deviceDenial(me.auth.policy, me.id, dev), http.StatusForbidden)
		return
	}
	s.render(w, http.StatusOK, "term.html", map[string]any{"Device": device, "CSRF": s.web.signer.csrf(me.sess.ID), "StyleNonce": nonce})
}

func (s *Server) serveWebStatic(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	f, ok := s.web.files[strings.TrimPrefix(r.URL.Path, "/web/static/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept-Encoding")
	h.Set("ETag", f.etag)
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.raw
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = f.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// webFile is a static file of the web terminal, also gzipped.
type webFile struct {
	raw, gz     []byte
	ctype, etag string
}

// loadWebFiles reads the files the edge serves under /web/static/ and
// gzips each once.
func loadWebFiles() (map[string]webFile, error) {
	names := map[string]string{
		"app.css": "static/app.css", "term.js": "static/term.js", "forms.js": "static/forms.js", "files.js": "static/files.js", "icon.svg": "static/icon.svg",
		"xterm.js": "vendor/xterm.js", "xterm.css": "vendor/xterm.css", "addon-fit.js": "vendor/addon-fit.js",
		"addon-web-links.js": "vendor/addon-web-links.js", "addon-search.js": "vendor/addon-search.js",
		"play.js": "static/play.js", "asciinema-player.js": "vendor/asciinema-player.min.js", "asciinema-player.css": "vendor/asciinema-player.css",
	}
	out := make(map[string]webFile, len(names))
	for name, file := range names {
		raw, err := fs.ReadFile(web.Files, file)
		if err != nil {
			return nil, err
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		sum := sha256.Sum256(raw)
		ctype := mime.TypeByExtension(path.Ext(file))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		out[name] = webFile{raw: raw, gz: gz.Bytes(), ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out, nil
}

// acceptsGzip reports whether an Accept-Encoding value admits gzip.
func acceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		// A weight of zero (q=0, q=0.0, q=0.000) refuses it (RFC 9110).
		for _, p := range strings.Split(params, ";") {
			k, w, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}

// serveWebTicket issues a single-use ticket for one device's terminal,
// valid for webTicketLifetime: the WebSocket sends it in its first
// message, so that no secret travels in a URL.
func (s *Server) serveWebTicket(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	if !s.checkOrigin(w, r) {
		return
	}
	me, err := s.webSessionFrom(w, r)
	if errors.Is(err, errWebUnchecked) {
		webUnchecked(w, err)
		return
	}
	if err != nil {
		s.refuse(w, r, http.StatusUnauthorized, "no_session", "not signed in, or the session ended: sign in again")
		return
	}
	if !checkToken(r.Header.Get("X-CSRF-Token"), s.web.signer.csrf(me.sess.ID)) {
		s.refuse(w, r, http.StatusForbidden, "bad_csrf", "the request carries no valid CSRF token; reload the page", "client", me.id.Name)
		return
	}
	device := r.URL.Query().Get("device")
	if certs.ValidDeviceID(device) != nil {
		http.Error(w, "the device query parameter must be a device ID", http.StatusBadRequest)
		return
	}
	if dev := s.deviceRef(me.auth.policy, device); !me.auth.policy.DeviceAllowed(me.id, dev) {
		http.Error(w, deviceDenial(me.auth.policy, me.id, dev), http.StatusForbidden)
		return
	}
	t := webTicket{Session: me.sess.ID, Device: device, Nonce: randomHex(16), Expires: time.Now().Add(webTicketLifetime).UnixMilli()}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"ticket": s.web.signer.seal("ticket", t)})
}

// redeemTicket checks a ticket for the session sessionID and uses it up.
func (s *Server) redeemTicket(ctx context.Context, v, sessionID string) (webTicket, error) {
	var t webTicket
	if err := s.web.signer.open("ticket", v, maxWebTicket, &t); err != nil {
		return t, fmt.Errorf("%w: %v", ErrWebTicket, err)
	}
	exp := time.UnixMilli(t.Expires)
	switch {
	case time.Now().After(exp):
		return t, fmt.Errorf("%w: it expired; reload the page", ErrWebTicket)
	case t.Session != sessionID:
		return t, fmt.Errorf("%w: it was issued to another session", ErrWebTicket)
	}
	ctx, cancel := context.WithTimeout(ctx, webStateTimeout)
	fresh, err := s.web.tickets.Use(ctx, t.Nonce, exp)
	cancel()
	switch {
	case err != nil:
		return t, fmt.Errorf("%w: cannot check that it is unused (%v); reload the page to retry", ErrWebTicket, err)
	case !fresh:
		return t, fmt.Errorf("%w: it was used already; reload the page", ErrWebTicket)
	}
	return t, nil
}
