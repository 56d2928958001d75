package edge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// The web terminal's sign-in is stateless: a session cookie carries what
// it needs (an ID, how its holder signed in, the credential that method
// checks again on every request, and its times) and an HMAC-SHA256 over
// it with WebConfig.Key, so any edge that has the key accepts it. Logout
// adds the cookie's ID to a revocation set until the cookie would expire.
// CSRF tokens and terminal tickets are MACs of the same key.

// Web sign-in errors.
var (
	// ErrWebSession: the session cookie is missing, malformed, forged,
	// expired, idle too long or revoked; the page asks to sign in again.
	ErrWebSession = errors.New("edge: no valid web session")
	// ErrWebTicket: a terminal ticket is malformed, forged, expired,
	// used already, or not the session's.
	ErrWebTicket = errors.New("edge: invalid terminal ticket")
)

// Sign-in methods, as a session cookie names them. A method turns the
// credential the cookie carries back into an identity under the policy
// of now (webMethods); a new method (OIDC) adds an entry there and a way
// to create sessions.
const (
	webMethodToken = "token" // credential: the hex SHA-256 of a client token
)

// webStateTimeout bounds a web request's wait for the state the edges
// share (sign-outs, used tickets, terminal leases): one operation and, on
// the first use of a store after the edge starts, its binding, which on a
// cluster that has just formed waits for the store's replicas.
const webStateTimeout = 15 * time.Second

// Bounds of what a browser sends.
const (
	maxWebCookie = 4000 // bytes of a session cookie's value
	maxWebCred   = 2048 // bytes of its credential (an SSO identity's groups)
	maxWebTicket = 512  // bytes of a ticket
)

// webSession is the content of a session cookie.
type webSession struct {
	V      int    `json:"v"`
	ID     string `json:"id"`  // 32 hex digits, random
	Method string `json:"m"`   // a webMethod* constant
	Cred   string `json:"c"`   // what Method checks on every request
	Issued int64  `json:"iat"` // Unix seconds
	Active int64  `json:"act"` // Unix seconds of the last request
}

// webTicket is the content of a terminal ticket.
type webTicket struct {
	Session string `json:"s"` // the ID of the session it was issued to
	Device  string `json:"d"`
	Nonce   string `json:"n"`
	Expires int64  `json:"exp"` // Unix milliseconds
}

// webSigner signs and checks the web terminal's cookies, CSRF tokens and
// tickets with one key.
type webSigner struct {
	key []byte
}

func (k webSigner) mac(purpose string, b []byte) []byte {
	h := hmac.New(sha256.New, k.key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil)
}

var b64 = base64.RawURLEncoding

// seal returns base64(v's JSON) "." base64(MAC).
func (k webSigner) seal(purpose string, v any) string {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	return b64.EncodeToString(b) + "." + b64.EncodeToString(k.mac(purpose, b))
}

// open checks a sealed value of at most limit bytes and decodes it into v.
func (k webSigner) open(purpose, s string, limit int, v any) error {
	if len(s) > limit {
		return fmt.Errorf("%d bytes, more than the %d allowed", len(s), limit)
	}
	body, sig, ok := strings.Cut(s, ".")
	if !ok {
		return errors.New("malformed")
	}
	b, err := b64.DecodeString(body)
	if err != nil {
		return errors.New("malformed")
	}
	m, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(m, k.mac(purpose, b)) {
		return errors.New("bad signature")
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("malformed")
	}
	return nil
}

// decodeSession checks a session cookie's value: its signature and form
// only (times and revocation are checked by webSessionFrom).
func (k webSigner) decodeSession(v string) (webSession, error) {
	var s webSession
	if err := k.open("session", v, maxWebCookie, &s); err != nil {
		return s, err
	}
	if s.V != 1 || len(s.ID) != 32 || s.Method == "" || len(s.Cred) > maxWebCred {
		return s, errors.New("malformed")
	}
	if _, err := hex.DecodeString(s.ID); err != nil {
		return s, errors.New("malformed")
	}
	return s, nil
}

// csrf returns the CSRF token of session id: pages carry it, and every
// state-changing request sends it back.
func (k webSigner) csrf(id string) string {
	return b64.EncodeToString(k.mac("csrf", []byte(id)))
}

// loginCSRF returns the sign-in form's CSRF token for the nonce of its
// pre-session cookie.
func (k webSigner) loginCSRF(nonce string) string {
	return b64.EncodeToString(k.mac("login", []byte(nonce)))
}

func checkToken(got, want string) bool {
	return got != "" && hmac.Equal([]byte(got), []byte(want))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// WebRevocations holds the IDs of the web sessions that signed out, each
// until the time its cookie expires anyway. Implementations are safe for
// concurrent use.
type WebRevocations interface {
	// Revoke adds id until until.
	Revoke(ctx context.Context, id string, until time.Time) error
	// Revoked reports whether id is revoked. An error fails the request
	// that asked: a session that cannot be checked is not accepted.
	Revoked(ctx context.Context, id string) (bool, error)
}

// MemoryWebRevocations is the WebRevocations of one edge, in memory. In a
// cluster, a session signed out on one edge stays valid on the others
// unless they share a WebRevocations.
type MemoryWebRevocations struct {
	mu sync.Mutex
	// mu guards the following.
	until map[string]time.Time
}

// Revoke implements WebRevocations.
func (m *MemoryWebRevocations) Revoke(_ context.Context, id string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until == nil {
		m.until = make(map[string]time.Time)
	}
	now := time.Now()
	for k, t := range m.until {
		if now.After(t) {
			delete(m.until, k)
		}
	}
	m.until[id] = until
	return nil
}

// Revoked implements WebRevocations.
func (m *MemoryWebRevocations) Revoked(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.until[id]
	return ok && time.Now().Before(t), nil
}

// WebTickets records the terminal tickets used, each until it expires,
// so that each opens one terminal. Implementations are safe for
// concurrent use.
type WebTickets interface {
	// Use marks the ticket nonce used until until; it reports false when
	// it already was. An error refuses the ticket.
	Use(ctx context.Context, nonce string, until time.Time) (bool, error)
}

// WebTerminalLeases holds leases for each open web terminal, one under
// its identity and one under its browser session, on all the edges that
// share it, so that WebConfig.MaxTerminalsPerIdentity and
// MaxTerminalsPerSession cap an identity's and a session's terminals on
// the cluster rather than on each edge (a session cookie is good on
// every edge). Implementations are safe for concurrent use.
type WebTerminalLeases interface {
	// Acquire takes a lease for one terminal of identity unless it
	// already holds max, and reports whether it did. The lease holds
	// until release is called; release returns within a few seconds. An
	// error refuses the terminal.
	Acquire(ctx context.Context, identity string, max int) (release func(), ok bool, err error)
	// AcquireSession is Acquire for the browser session of ID session,
	// counted apart from every identity.
	AcquireSession(ctx context.Context, session string, max int) (release func(), ok bool, err error)
}

// WebRevocationWatcher is a WebRevocations that hears of the sign-outs
// of every edge sharing it.
type WebRevocationWatcher interface {
	// WatchRevocations calls revoked with the ID of every revoked
	// session, those revoked already and those revoked from now on,
	// until ctx ends. It keeps watching through the failures of its
	// store, and then hears again of every revoked session.
	WatchRevocations(ctx context.Context, revoked func(id string))
}

// MemoryWebTickets is the WebTickets of one edge, in memory. In a
// cluster, a ticket used on one edge could be used again on another
// unless they share a WebTickets.
type MemoryWebTickets struct {
	mu sync.Mutex
	// mu guards the following.
	used map[string]time.Time
}

// Use implements WebTickets.
func (t *MemoryWebTickets) Use(_ context.Context, nonce string, until time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.used == nil {
		t.used = make(map[string]time.Time)
	}
	now := time.Now()
	if len(t.used) > 1024 {
		for k, e := range t.used {
			if now.After(e) {
				delete(t.used, k)
			}
		}
	}
	if _, ok := t.used[nonce]; ok {
		return false, nil
	}
	t.used[nonce] = until
	return true, nil
}
