package edge

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tetherhq/tether/certs"
)

// AuthConfig is how people and automation sign in beyond static tokens
// (docs/edge.md, "Sign-in"): user certificates from an SSO login, and
// bearer JWTs from configured issuers. Every check on connect is offline:
// a user certificate against the user CA, a JWT against the issuer's keys
// the edge holds.
type AuthConfig struct {
	// UserCA verifies user certificates; nil accepts none. Every edge of
	// a cluster holds the same one.
	UserCA *x509.CertPool
	// UserSigner is the user CA with its key, which signs user
	// certificates at /api/auth/exchange; nil: this edge verifies user
	// certificates but signs none.
	UserSigner *certs.KeyPair
	// MaxCertLifetime caps a user certificate's lifetime; zero or more
	// than certs.MaxUserLifetime (8 h) means 8 h.
	MaxCertLifetime time.Duration
	// OIDC is the identity provider of `tether login` and the web's
	// "Sign in with SSO"; nil: no login.
	OIDC *OIDCConfig
	// JWTIssuers are the issuers whose JWTs are accepted as bearer
	// credentials on /client and /api (a CI system's OIDC tokens).
	JWTIssuers []JWTIssuer
	// HTTPClient fetches the providers' configuration and keys; nil: a
	// client with a 10 s timeout.
	HTTPClient *http.Client
	// KeyRefetch is how often at most the keys of an issuer are fetched
	// again for a token signed with an unknown key; zero means
	// DefaultKeyRefetch (1 min).
	KeyRefetch time.Duration
	// Now is the clock; nil is time.Now. Tests move it.
	Now func() time.Time
	// Exchanged, when set, holds the ID tokens exchanged for a certificate
	// on every edge of a cluster, so that each is exchanged once in all,
	// or those of a single edge across its restarts (FileExchangedTokens);
	// nil: each edge remembers its own, in memory.
	Exchanged ExchangedTokens
}

// ExchangedTokens remembers the ID tokens exchanged for certificates,
// shared by the edges of a cluster (cluster.ExchangedTokens), or kept by
// a single edge across restarts (FileExchangedTokens).
type ExchangedTokens interface {
	// Claim records key, the hex SHA-256 of an ID token that expires at
	// until, and reports whether it was not recorded before. An error
	// (ErrClusterUnavailable, or a file that cannot be written) refuses
	// the exchange: a copy of the token must not pass because the record
	// could not be checked.
	Claim(ctx context.Context, key string, until time.Time) (bool, error)
}

// OIDCConfig is the identity provider that people sign in with.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as its discovery
	// document gives it.
	Issuer string
	// ClientID is this deployment's client at the provider; the CLI and
	// the web terminal use it. ClientSecret is for the web terminal's
	// code exchange, when the provider requires one (a confidential
	// client); the CLI never sees it.
	ClientID, ClientSecret string
	// Scopes requested; empty means openid, email, profile and groups.
	Scopes []string
	// NameClaim names the person (default "email"); GroupsClaim lists
	// their groups (default "groups").
	NameClaim, GroupsClaim string
	// Audiences accepted in ID tokens; empty means ClientID.
	Audiences []string
}

// JWTIssuer is an issuer of bearer JWTs, such as a CI system.
type JWTIssuer struct {
	Issuer string
	// Audiences: a token must name one of them. Required.
	Audiences []string
	// NameClaim names the identity (default "sub"); GroupsClaim its
	// groups (default: none).
	NameClaim, GroupsClaim string
}

// Defaults of the claims and scopes.
var defaultScopes = []string{oidc.ScopeOpenID, "email", "profile", "groups"}

// clockSkew is the clock difference tolerated between the edge and the
// identity provider.
const clockSkew = 60 * time.Second

// issuer verifies the tokens of one issuer.
type issuer struct {
	url                    string
	audiences              []string
	nameClaim, groupsClaim string
	keys                   *keySet
	verifier               *oidc.IDTokenVerifier
}

// authRuntime is an AuthConfig made ready: its issuers' verifiers.
type authRuntime struct {
	cfg     *AuthConfig
	now     func() time.Time
	oidc    *issuer   // nil without OIDC
	jwt     []*issuer // JWTIssuers, in order
	maxLife time.Duration
	// verified remembers the certificates and JWTs that passed, until they
	// expire: a client that reconnects costs a hash, not a signature check.
	verified verifiedCache
	// exchanged remembers the ID tokens exchanged for a certificate, until
	// they expire: each is exchanged once on this edge, across reloads.
	exchanged *verifiedCache
}

// maxVerified bounds verifiedCache.
const maxVerified = 4096

// verifiedCache maps the SHA-256 of a credential that passed (a user
// certificate's DER, a JWT) to what it proved, until it expires. Only
// successes are kept: a flood of bad credentials cannot fill it.
type verifiedCache struct {
	mu sync.Mutex
	// mu guards m.
	m map[[sha256.Size]byte]verified
}

type verified struct {
	id       Identity
	notAfter time.Time
	serial   string
}

func (c *verifiedCache) get(k [sha256.Size]byte, now time.Time) (verified, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	if ok && !now.Before(v.notAfter) {
		delete(c.m, k)
		return verified{}, false
	}
	return v, ok
}

func (c *verifiedCache) put(k [sha256.Size]byte, v verified, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v, now)
}

// claim puts v for k unless k is there and unexpired, and reports whether
// it did: of two requests with the same credential at once, one claims it.
func (c *verifiedCache) claim(k [sha256.Size]byte, v verified, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok && now.Before(e.notAfter) {
		return false
	}
	c.putLocked(k, v, now)
	return true
}

// forget removes k.
func (c *verifiedCache) forget(k [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}

func (c *verifiedCache) putLocked(k [sha256.Size]byte, v verified, now time.Time) {
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]verified)
	}
	if len(c.m) >= maxVerified {
		for key, e := range c.m {
			if !now.Before(e.notAfter) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= maxVerified {
			clear(c.m)
		}
	}
	c.m[k] = v
}

// CheckAuthConfig checks an AuthConfig for the mistakes the edge cannot
// run with; the error says what to change.
func CheckAuthConfig(c *AuthConfig) error {
	if c == nil {
		return nil
	}
	if c.OIDC != nil {
		o := c.OIDC
		if err := checkIdPURL(o.Issuer); err != nil {
			return fmt.Errorf("auth.oidc.issuer: %w", err)
		}
		if o.ClientID == "" {
			return errors.New("auth.oidc.client_id is required: the client registered for Tether at the identity provider")
		}
		if c.UserSigner == nil {
			return errors.New("auth.oidc needs auth.user_ca with its key: the edge signs the user certificates of a login")
		}
	}
	if c.UserSigner != nil && c.UserCA == nil {
		return errors.New("auth: a user CA key without its certificate")
	}
	for i, j := range c.JWTIssuers {
		if err := checkIdPURL(j.Issuer); err != nil {
			return fmt.Errorf("auth.jwt_issuers[%d].issuer: %w", i, err)
		}
		if len(j.Audiences) == 0 {
			return fmt.Errorf("auth.jwt_issuers[%d] (%s): audiences is required: without one, any token of that issuer would do", i, j.Issuer)
		}
	}
	return nil
}

// newAuthRuntime makes c ready. old, when set, is the runtime it replaces
// (ReloadAuth): the ID tokens it saw exchanged stay used, and an issuer
// whose URL is unchanged keeps the keys fetched for it.
func newAuthRuntime(c *AuthConfig, old *authRuntime) *authRuntime {
	rt := &authRuntime{cfg: c, now: c.Now, maxLife: c.MaxCertLifetime, exchanged: &verifiedCache{}}
	kept := make(map[string]*keySet)
	if old != nil {
		rt.exchanged = old.exchanged
		for _, is := range append([]*issuer{old.oidc}, old.jwt...) {
			if is != nil {
				kept[is.url] = is.keys
			}
		}
	}
	if rt.now == nil {
		rt.now = time.Now
	}
	if rt.maxLife <= 0 || rt.maxLife > certs.MaxUserLifetime {
		rt.maxLife = certs.MaxUserLifetime
	}
	client := c.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: idpTimeout}
	}
	refetch := c.KeyRefetch
	if refetch <= 0 {
		refetch = DefaultKeyRefetch
	}
	mk := func(iss string, aud []string, name, groups string) *issuer {
		ks := kept[iss]
		if ks == nil {
			ks = &keySet{issuer: iss, client: client, refetch: refetch, now: rt.now}
		}
		v := oidc.NewVerifier(iss, ks, &oidc.Config{
			SkipClientIDCheck:    true, // audiences are checked against a list below
			SupportedSigningAlgs: algNames(),
			// An expiry up to clockSkew ago still passes.
			Now: func() time.Time { return rt.now().Add(-clockSkew) },
		})
		return &issuer{url: iss, audiences: aud, nameClaim: name, groupsClaim: groups, keys: ks, verifier: v}
	}
	if o := c.OIDC; o != nil {
		aud := o.Audiences
		if len(aud) == 0 {
			aud = []string{o.ClientID}
		}
		rt.oidc = mk(o.Issuer, aud, cmpOr(o.NameClaim, "email"), cmpOr(o.GroupsClaim, "groups"))
	}
	for _, j := range c.JWTIssuers {
		rt.jwt = append(rt.jwt, mk(j.Issuer, j.Audiences, cmpOr(j.NameClaim, "sub"), j.GroupsClaim))
	}
	return rt
}

// verify checks raw with the issuer's keys, its audience and, when nonce
// is set, its nonce, and maps its claims to an identity of method.
func (is *issuer) verify(ctx context.Context, raw, nonce, method string) (Identity, time.Time, error) {
	tok, err := is.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(is.audiences, a) }) {
		return Identity{}, time.Time{}, fmt.Errorf("the token's audience %v is not one this edge accepts (%v)", tok.Audience, is.audiences)
	}
	if nonce != "" && tok.Nonce != nonce {
		return Identity{}, time.Time{}, errors.New("the token's nonce is not the one of this sign-in; start again")
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("read the token's claims: %w", err)
	}
	id := Identity{Method: method}
	name, _ := claims[is.nameClaim].(string)
	if name == "" {
		return Identity{}, time.Time{}, fmt.Errorf("the token has no %q claim to name you by; the edge's name_claim must name a claim the provider sends", is.nameClaim)
	}
	if is.nameClaim == "email" {
		if v, ok := claims["email_verified"].(bool); ok && !v {
			return Identity{}, time.Time{}, fmt.Errorf("the identity provider has not verified the email %s", name)
		}
	}
	id.Name = name
	if is.groupsClaim != "" {
		switch g := claims[is.groupsClaim].(type) {
		case string:
			id.Groups = []string{g}
		case []any:
			for _, x := range g {
				if s, ok := x.(string); ok && s != "" {
					id.Groups = append(id.Groups, s)
				}
			}
		}
	}
	if err := certs.CheckUser(id.Name, id.Groups); err != nil {
		return Identity{}, time.Time{}, err
	}
	return id, tok.Expiry, nil
}

// looksLikeJWT reports whether a bearer credential is a compact JWS
// rather than a static token (which has no dots).
func looksLikeJWT(tok string) bool {
	return strings.Count(tok, ".") == 2 && strings.HasPrefix(tok, "eyJ")
}

// verifyJWT checks a bearer JWT against the configured issuers: the one
// its unverified "iss" names.
func (rt *authRuntime) verifyJWT(ctx context.Context, raw string) (Identity, time.Time, error) {
	if rt == nil || len(rt.jwt) == 0 {
		return Identity{}, time.Time{}, errors.New("this edge accepts no JWTs (no auth.jwt_issuers)")
	}
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	for _, is := range rt.jwt {
		if is.url == iss {
			k := sha256.Sum256([]byte(raw))
			if v, ok := rt.verified.get(k, rt.now().Add(-clockSkew)); ok {
				return v.id, v.notAfter, nil
			}
			id, exp, err := is.verify(ctx, raw, "", MethodJWT)
			if err == nil {
				rt.verified.put(k, verified{id: id, notAfter: exp}, rt.now())
			}
			return id, exp, err
		}
	}
	return Identity{}, time.Time{}, fmt.Errorf("the token's issuer %q is not in auth.jwt_issuers", iss)
}

// unverifiedIssuer reads the iss claim of a JWT without checking it, only
// to choose the verifier.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("malformed JWT")
	}
	b, err := decodeSegment(parts[1])
	if err != nil {
		return "", fmt.Errorf("malformed JWT payload: %w", err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("malformed JWT payload: %w", err)
	}
	return c.Iss, nil
}

// verifyUserCert checks a client certificate chain as a user's and
// returns the identity, its expiry and serial.
func (rt *authRuntime) verifyUserCert(chain []*x509.Certificate) (Identity, certs.User, error) {
	if rt == nil || rt.cfg.UserCA == nil {
		return Identity{}, certs.User{}, errors.New("this edge accepts no user certificates (no auth.user_ca)")
	}
	now := rt.now()
	var k [sha256.Size]byte
	if len(chain) == 1 {
		k = sha256.Sum256(chain[0].Raw)
		if v, ok := rt.verified.get(k, now); ok && !now.Before(chain[0].NotBefore) {
			return v.id, certs.User{Name: v.id.Name, Groups: v.id.Groups, NotAfter: v.notAfter, Serial: v.serial}, nil
		}
	}
	u, err := certs.VerifyUser(chain, rt.cfg.UserCA, now)
	if err != nil {
		return Identity{}, certs.User{}, err
	}
	id := Identity{Name: u.Name, Method: MethodOIDC, Groups: u.Groups}
	if len(chain) == 1 {
		rt.verified.put(k, verified{id: id, notAfter: u.NotAfter, serial: u.Serial}, now)
	}
	return id, u, nil
}

// authPrefix is the path of the sign-in endpoints.
const authPrefix = "/api/auth/"

// serveAuth routes the sign-in endpoints. Unlike the others, exchange
// takes a body: it must come with a Content-Length (no Transfer-Encoding),
// and the other framing doubts of ambiguity are refused as there.
func (s *Server) serveAuth(w http.ResponseWriter, r *http.Request, folded bool) {
	probe := *r
	probe.TransferEncoding, probe.ContentLength = nil, 0
	msg := ambiguity(&probe, folded)
	if msg == "" && len(r.TransferEncoding) > 0 {
		msg = "the request has a Transfer-Encoding header; send the body with a Content-Length"
	}
	if msg != "" {
		s.refuseAmbiguous(w, r, msg)
		return
	}
	switch r.URL.Path {
	case authPrefix + "config":
		s.serveAuthConfig(w, r)
	case authPrefix + "exchange":
		s.serveAuthExchange(w, r)
	default:
		http.NotFound(w, r)
	}
}

// authConfigAnswer is GET /api/auth/config (docs/api.md).
type authConfigAnswer struct {
	Issuer                      string   `json:"issuer"`
	ClientID                    string   `json:"client_id"`
	Scopes                      []string `json:"scopes"`
	AuthorizationEndpoint       string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint               string   `json:"token_endpoint,omitempty"`
	DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint,omitempty"`
	MaxCertLifetimeSeconds      int64    `json:"max_cert_lifetime_seconds"`
}

func (rt *authRuntime) scopes() []string {
	if s := rt.cfg.OIDC.Scopes; len(s) > 0 {
		return s
	}
	return defaultScopes
}

// serveAuthConfig answers GET /api/auth/config: what a client needs to
// sign in. It is public: it holds no secret.
func (s *Server) serveAuthConfig(w http.ResponseWriter, r *http.Request) {
	if !s.admitAPI(w, r, http.MethodGet) {
		return
	}
	rt := s.auth.Load().rt
	if rt == nil || rt.oidc == nil {
		http.Error(w, "this edge has no SSO login (auth.oidc is not configured); use a token", http.StatusNotFound)
		return
	}
	d, err := rt.oidc.keys.discovery(r.Context())
	if err != nil {
		s.log.Warn("auth config: identity provider unreachable", "err", err)
		http.Error(w, "the identity provider cannot be reached: "+err.Error()+"; retry later", http.StatusBadGateway)
		return
	}
	ans := authConfigAnswer{Issuer: rt.oidc.url, ClientID: rt.cfg.OIDC.ClientID, Scopes: rt.scopes(),
		AuthorizationEndpoint: d.AuthorizationEndpoint, TokenEndpoint: d.TokenEndpoint,
		DeviceAuthorizationEndpoint: d.DeviceAuthorizationEndpoint, MaxCertLifetimeSeconds: int64(rt.maxLife / time.Second)}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ans)
}

// maxExchangeBody bounds POST /api/auth/exchange.
const maxExchangeBody = 64 << 10

// exchangeRequest is the body of POST /api/auth/exchange.
type exchangeRequest struct {
	IDToken string `json:"id_token"`
	// CSR is a PEM certificate request for an ECDSA P-256 key; its
	// signature proves the key.
	CSR string `json:"csr"`
	// Nonce, when the login sent one, must be the ID token's.
	Nonce string `json:"nonce,omitempty"`
}

// exchangeAnswer is its answer.
type exchangeAnswer struct {
	Certificate string    `json:"certificate"`
	Name        string    `json:"name"`
	Groups      []string  `json:"groups,omitempty"`
	NotAfter    time.Time `json:"not_after"`
}

// serveAuthExchange answers POST /api/auth/exchange: an ID token of the
// configured provider and a certificate request in, a user certificate
// out.
func (s *Server) serveAuthExchange(w http.ResponseWriter, r *http.Request) {
	if !s.admitAPI(w, r, http.MethodPost) {
		return
	}
	st := s.auth.Load()
	rt := st.rt
	if rt == nil || rt.oidc == nil || rt.cfg.UserSigner == nil {
		http.Error(w, "this edge has no SSO login (auth.oidc is not configured); use a token", http.StatusNotFound)
		return
	}
	// The head scanner of Listener reads no bodies: this connection
	// serves no further request. The body gets the handshake timeout.
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.tcfg.HandshakeTimeout))
	var req exchangeRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxExchangeBody+1))
	if err == nil && len(body) > maxExchangeBody {
		err = fmt.Errorf("the body is larger than %d bytes", maxExchangeBody)
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, "bad exchange request: "+err.Error()+`; send {"id_token": ..., "csr": ...}`, http.StatusBadRequest)
		return
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, exp, err := rt.oidc.verify(r.Context(), req.IDToken, req.Nonce, MethodOIDC)
	// The token is claimed before anything is signed for it, so that two
	// exchanges of one token at once cannot both pass; it is released
	// again if no certificate comes of it.
	used := sha256.Sum256([]byte(req.IDToken))
	if err == nil && !rt.exchanged.claim(used, verified{id: id, notAfter: exp}, rt.now().Add(-clockSkew)) {
		err = errAlreadyExchanged
	}
	if err != nil {
		s.auditRejected(Event{Kind: EventUserLogin, RemoteAddr: r.RemoteAddr, Auth: MethodOIDC, Result: "bad_id_token", Reason: err.Error()})
		s.refuse(w, r, http.StatusUnauthorized, "bad_id_token", "ID token rejected: "+err.Error()+"; run `tether login` again")
		return
	}
	if !admitted(st.policy, id) {
		rt.exchanged.forget(used)
		s.auditRejected(Event{Kind: EventUserLogin, Client: id.Name, RemoteAddr: r.RemoteAddr, Auth: MethodOIDC, Result: "forbidden"})
		s.refuse(w, r, http.StatusForbidden, "forbidden", fmt.Sprintf("%s has no access on this edge; ask its operator for a rule", id.Name))
		return
	}
	// On a cluster, the other edges' exchanges count too; on a single edge
	// with a state_dir, those from before a restart.
	if ex := rt.cfg.Exchanged; ex != nil {
		fresh, err := ex.Claim(r.Context(), hex.EncodeToString(used[:]), exp.Add(clockSkew))
		if err != nil {
			rt.exchanged.forget(used)
			reason := "state_unavailable" // a single edge's file
			if s.Cluster != nil {
				reason = "cluster_unavailable"
			}
			s.log.Warn("auth exchange: the record of exchanged ID tokens is unavailable", "err", err)
			s.refuse(w, r, http.StatusServiceUnavailable, reason, "cannot check that this ID token was not used before: "+err.Error()+"; retry in a moment")
			return
		}
		if !fresh {
			s.auditRejected(Event{Kind: EventUserLogin, Client: id.Name, RemoteAddr: r.RemoteAddr, Auth: MethodOIDC, Result: "bad_id_token", Reason: errAlreadyExchanged.Error()})
			s.refuse(w, r, http.StatusUnauthorized, "bad_id_token", "ID token rejected: "+errAlreadyExchanged.Error()+"; run `tether login` again")
			return
		}
	}
	cert, err := rt.cfg.UserSigner.IssueUser(csr.PublicKey, id.Name, id.Groups, rt.maxLife)
	if err != nil {
		rt.exchanged.forget(used)
		http.Error(w, "cannot sign a certificate: "+err.Error(), http.StatusBadRequest)
		return
	}
	serial := certs.SerialHex(cert)
	s.log.Info("user certificate issued", "client", id.Name, "groups", id.Groups, "serial", serial, "not_after", cert.NotAfter)
	s.audit.Audit(Event{Time: time.Now(), Kind: EventUserLogin, Client: id.Name, Auth: MethodOIDC, RemoteAddr: r.RemoteAddr,
		Serial: serial, Result: "ok"})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(exchangeAnswer{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		Name:        id.Name, Groups: id.Groups, NotAfter: cert.NotAfter.UTC()})
}

// errAlreadyExchanged refuses a copy of an ID token that was exchanged.
var errAlreadyExchanged = errors.New("this ID token was exchanged already; sign in again for a new one")

// EventUserLogin records a user certificate issued after an SSO login, or
// a refused ID token.
const EventUserLogin = "user_login"

// parseCSR decodes a PEM certificate request and checks its signature.
func parseCSR(s string) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr must be a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: its signature does not verify: %w", err)
	}
	return csr, nil
}
