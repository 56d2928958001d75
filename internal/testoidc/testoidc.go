// Package testoidc is an OpenID Connect provider for tests, built on
// github.com/zitadel/oidc's op package and its example in-memory storage:
// discovery, JWKS, the authorization code flow with PKCE and the device
// authorization grant (RFC 8628). Beyond a real provider, it has test-only
// endpoints under /test/ to approve a device code without a browser, log
// the browser flow in as a chosen user, rotate the signing key, mint tokens
// with chosen (bad) claims and count the JWKS fetches.
//
// It is a test rig: tests import it, and cmd/testoidc runs it as a process
// of its own for e2e tests. Never use it as a real identity provider.
package testoidc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person the provider knows.
type User struct {
	ID     string   // the subject
	Email  string   // the email claim, verified
	Groups []string // the groups claim
}

// Options configure a Provider.
type Options struct {
	// ClientID is the one client, public (PKCE, no secret), allowed the
	// code and device grants with any loopback redirect. Default "tether".
	ClientID string
	// Users; default alice@example.com in groups field-eng and ops.
	Users []User
	// PollInterval of the device flow; default 1 s.
	PollInterval time.Duration
}

// Provider is a running provider.
type Provider struct {
	Issuer   string
	ClientID string

	srv   *http.Server
	ln    net.Listener
	st    *store
	op    *op.Provider
	done  chan struct{}
	users map[string]User

	jwksFetches atomic.Int64
	loginAs     atomic.Pointer[string]
}

// Start listens on addr ("127.0.0.1:0") and serves until Close.
func Start(addr string, o Options) (*Provider, error) {
	if o.ClientID == "" {
		o.ClientID = "tether"
	}
	if len(o.Users) == 0 {
		o.Users = []User{{ID: "u1", Email: "alice@example.com", Groups: []string{"field-eng", "ops"}}}
	}
	if o.PollInterval == 0 {
		o.PollInterval = time.Second
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Provider{Issuer: "http://" + ln.Addr().String(), ClientID: o.ClientID, ln: ln, done: make(chan struct{}),
		users: make(map[string]User)}
	us := userStore{}
	for _, u := range o.Users {
		p.users[u.ID] = u
		us[u.ID] = &storage.User{ID: u.ID, Username: u.ID, Password: "pw", Email: u.Email, EmailVerified: true,
			FirstName: u.ID}
	}
	first := o.Users[0].ID
	p.loginAs.Store(&first)
	key, err := newKey()
	if err != nil {
		ln.Close()
		return nil, err
	}
	p.st = &store{
		Storage: storage.NewStorageWithClients(us, map[string]*storage.Client{o.ClientID: storage.DeviceClient(o.ClientID, "")}),
		client:  &client{id: o.ClientID},
		keys:    []*sigKey{key},
		p:       p,
	}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		ln.Close()
		return nil, err
	}
	prov, err := op.NewProvider(&op.Config{
		CryptoKey:      cryptoKey,
		CodeMethodS256: true,
		AuthMethodPost: true,
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     5 * time.Minute,
			PollInterval: o.PollInterval,
			UserFormPath: "/device",
			UserCode:     op.UserCodeBase20,
		},
	}, p.st, op.StaticIssuer(p.Issuer), op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, err
	}
	p.op = prov
	mux := http.NewServeMux()
	mux.HandleFunc("/login", p.serveLogin)
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "test provider: approve the code with POST /test/approve?user_code=CODE&user=ID")
	})
	mux.HandleFunc("/test/approve", p.serveApprove)
	mux.HandleFunc("/test/login-as", p.serveLoginAs)
	mux.HandleFunc("/test/rotate", p.serveRotate)
	mux.HandleFunc("/test/mint", p.serveMint)
	mux.HandleFunc("/test/stats", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int64{"jwks_fetches": p.jwksFetches.Load()})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		p.jwksFetches.Add(1)
		prov.ServeHTTP(w, r)
	})
	mux.Handle("/", prov)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

// Close stops the provider.
func (p *Provider) Close() error {
	err := p.srv.Close()
	<-p.done
	return err
}

// JWKSFetches counts the requests for the provider's keys.
func (p *Provider) JWKSFetches() int64 { return p.jwksFetches.Load() }

// Approve completes the device authorization of userCode as user.
func (p *Provider) Approve(userCode, userID string) error {
	if _, ok := p.users[userID]; !ok {
		return fmt.Errorf("testoidc: no user %q", userID)
	}
	return p.st.CompleteDeviceAuthorization(context.Background(), userCode, userID)
}

// Rotate makes a new signing key current; the old ones stay published.
func (p *Provider) Rotate() (kid string, err error) {
	k, err := newKey()
	if err != nil {
		return "", err
	}
	p.st.mu.Lock()
	p.st.keys = append([]*sigKey{k}, p.st.keys...)
	p.st.mu.Unlock()
	return k.id, nil
}

// Claims of a minted token; zero fields take the provider's defaults: its
// issuer, its client ID as the audience, the first user, an expiry in 5
// minutes.
type Claims struct {
	Issuer   string         `json:"iss,omitempty"`
	Audience []string       `json:"aud,omitempty"`
	Subject  string         `json:"sub,omitempty"`
	Expiry   int64          `json:"exp,omitempty"`
	Extra    map[string]any `json:"extra,omitempty"`
	// Alg "none" makes an unsigned token; UnknownKey signs with a key
	// the provider never publishes, under a fresh kid.
	Alg        string `json:"alg,omitempty"`
	UnknownKey bool   `json:"unknown_key,omitempty"`
	// Nonce, when set, is the nonce claim.
	Nonce string `json:"nonce,omitempty"`
}

// Mint makes a token with c.
func (p *Provider) Mint(c Claims) (string, error) {
	if c.Issuer == "" {
		c.Issuer = p.Issuer
	}
	if len(c.Audience) == 0 {
		c.Audience = []string{p.ClientID}
	}
	var u User
	for _, x := range p.users {
		if c.Subject == "" || x.ID == c.Subject {
			u = x
			break
		}
	}
	if c.Subject == "" {
		c.Subject = u.ID
	}
	if c.Expiry == 0 {
		c.Expiry = time.Now().Add(5 * time.Minute).Unix()
	}
	claims := map[string]any{"iss": c.Issuer, "aud": c.Audience, "sub": c.Subject, "exp": c.Expiry,
		"iat": time.Now().Unix(), "email": u.Email, "email_verified": true, "groups": u.Groups, "jti": randomID()}
	if c.Nonce != "" {
		claims["nonce"] = c.Nonce
	}
	for k, v := range c.Extra {
		claims[k] = v
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	if c.Alg == "none" {
		enc := base64.RawURLEncoding
		return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + ".", nil
	}
	k := p.st.current()
	if c.UnknownKey {
		if k, err = newKey(); err != nil {
			return "", err
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.id))
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// serveLogin is the login page the browser flow reaches: it logs in as
// the user /test/login-as chose (the first user by default), without a
// form, and returns to the provider's callback.
func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	user := *p.loginAs.Load()
	if err := p.st.CheckUsernamePassword(user, "pw", id); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), id), http.StatusFound)
}

func (p *Provider) serveApprove(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	user := r.URL.Query().Get("user")
	if user == "" {
		user = *p.loginAs.Load()
	}
	if err := p.Approve(r.URL.Query().Get("user_code"), user); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "approved")
}

func (p *Provider) serveLoginAs(w http.ResponseWriter, r *http.Request) {
	u := r.URL.Query().Get("user")
	if _, ok := p.users[u]; !ok || r.Method != http.MethodPost {
		http.Error(w, "POST /test/login-as?user=ID of a known user", http.StatusBadRequest)
		return
	}
	p.loginAs.Store(&u)
}

func (p *Provider) serveRotate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	kid, err := p.Rotate()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, kid)
}

func (p *Provider) serveMint(w http.ResponseWriter, r *http.Request) {
	var c Claims
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&c); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tok, err := p.Mint(c)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, tok)
}

// sigKey is a signing key with its ID.
type sigKey struct {
	id  string
	key *rsa.PrivateKey
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func newKey() (*sigKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &sigKey{id: fmt.Sprintf("k-%x", b), key: k}, nil
}

func (k *sigKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *sigKey) Key() any                                    { return k.key }
func (k *sigKey) ID() string                                  { return k.id }

type pubKey struct{ k *sigKey }

func (p pubKey) ID() string                         { return p.k.id }
func (p pubKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p pubKey) Use() string                        { return "sig" }
func (p pubKey) Key() any                           { return &p.k.key.PublicKey }

// store is the example storage with Tether's client, rotating keys and a
// groups claim.
type store struct {
	*storage.Storage
	client *client
	p      *Provider

	mu   sync.Mutex
	keys []*sigKey // the first signs
}

func (s *store) current() *sigKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[0]
}

func (s *store) SigningKey(context.Context) (op.SigningKey, error) { return s.current(), nil }

func (s *store) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *store) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]op.Key, len(s.keys))
	for i, k := range s.keys {
		out[i] = pubKey{k}
	}
	return out, nil
}

func (s *store) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, errors.New("client not found")
	}
	return s.client, nil
}

func (s *store) AuthorizeClientIDSecret(_ context.Context, id, _ string) error {
	if id != s.client.id {
		return errors.New("client not found")
	}
	return nil
}

// SetUserinfoFromRequest adds the groups claim to the ID token.
func (s *store) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	if u, ok := s.p.users[req.GetSubject()]; ok {
		ui.AppendClaims("groups", u.Groups)
	}
	return nil
}

// client is Tether's public client: PKCE, the code and device grants,
// redirects to any loopback address and to any https URL (a test edge's
// web terminal on a random port).
type client struct{ id string }

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return []string{"http://127.0.0.1/callback"} }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ApplicationType() op.ApplicationType {
	return op.ApplicationTypeNative
}
func (c *client) AuthMethod() oidc.AuthMethod { return oidc.AuthMethodNone }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeDeviceCode}
}
func (c *client) LoginURL(id string) string            { return "/login?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return 5 * time.Minute }
func (c *client) DevMode() bool                        { return true }
func (c *client) IsScopeAllowed(string) bool           { return true }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RedirectURIGlobs() []string {
	return []string{"https://127.0.0.1:*/*", "https://127.0.0.1:*/*/*/*"}
}
func (c *client) PostLogoutRedirectURIGlobs() []string { return nil }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// userStore is storage.UserStore over a map.
type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User      { return u[id] }
func (u userStore) GetUserByUsername(n string) *storage.User { return u[strings.TrimSpace(n)] }
func (u userStore) ExampleClientID() string                  { return "service" }
