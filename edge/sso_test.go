package edge_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testoidc"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

const alice = "alice@example.com"

// fakeClock is a clock that tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// ssoRig is an edge with SSO sign-in against a test provider.
type ssoRig struct {
	m      *mock.EdgeMock
	auth   *edge.AuthConfig // the edge's
	idp    *testoidc.Provider
	userCA *certs.KeyPair
	clock  *fakeClock
}

// newSSORig starts a provider and an edge that signs user certificates
// of at most life, accepts the provider's ID tokens (audience "tether")
// and its JWTs for audience "tether-ci" (named by sub), with rules for
// alice (by certificate) and u1 (by JWT).
func newSSORig(t *testing.T, life time.Duration) *ssoRig {
	t.Helper()
	idp, err := testoidc.Start("127.0.0.1:0", testoidc.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { idp.Close() })
	userCA, err := certs.NewCA("Tether user CA", certs.Options{})
	require.NoError(t, err)
	return newSSOEdge(t, idp, userCA, life, nil)
}

// newSSOEdge is newSSORig with the provider and user CA given, and the
// record of exchanged ID tokens ex (nil: the edge's own).
func newSSOEdge(t *testing.T, idp *testoidc.Provider, userCA *certs.KeyPair, life time.Duration, ex edge.ExchangedTokens) *ssoRig {
	t.Helper()
	rules := append(testRules(),
		edge.ClientRule{Name: alice, Devices: []string{"d-*"}, TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}, PTY: true},
		edge.ClientRule{Name: "u1", Devices: []string{"d-*"}, TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}})
	p, err := edge.NewStaticPolicy(rules)
	require.NoError(t, err)
	clock := &fakeClock{}
	auth := &edge.AuthConfig{
		UserCA:          certs.PoolOf(userCA.Cert),
		UserSigner:      userCA,
		MaxCertLifetime: life,
		OIDC:            &edge.OIDCConfig{Issuer: idp.Issuer, ClientID: idp.ClientID},
		JWTIssuers:      []edge.JWTIssuer{{Issuer: idp.Issuer, Audiences: []string{"tether-ci"}}},
		Now:             clock.now,
		Exchanged:       ex,
	}
	require.NoError(t, edge.CheckAuthConfig(auth))
	m := newEdge(t, mock.Options{Policy: p, Auth: auth})
	return &ssoRig{m: m, auth: auth, idp: idp, userCA: userCA, clock: clock}
}

func (r *ssoRig) httpClient(t *testing.T) *http.Client {
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: r.m.ClientTLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// exchange posts an ID token and a fresh key's CSR; it returns the HTTP
// status, the body and, on 200, the key and certificate.
func (r *ssoRig) exchange(t *testing.T, idToken string) (int, string, *ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := certs.NewUserKey()
	require.NoError(t, err)
	csr, err := certs.UserCSR(key)
	require.NoError(t, err)
	body, _ := json.Marshal(map[string]string{"id_token": idToken,
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	resp, err := r.httpClient(t).Post(r.m.URL()+"/api/auth/exchange", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, string(b), nil, nil
	}
	var ans struct {
		Certificate string   `json:"certificate"`
		Name        string   `json:"name"`
		Groups      []string `json:"groups"`
	}
	require.NoError(t, json.Unmarshal(b, &ans))
	blk, _ := pem.Decode([]byte(ans.Certificate))
	require.NotNil(t, blk)
	cert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return resp.StatusCode, string(b), key, cert
}

func (r *ssoRig) login(t *testing.T) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	tok, err := r.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, key, cert := r.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
	return key, cert
}

// certTLS is the client TLS config presenting cert.
func certTLS(m *mock.EdgeMock, key *ecdsa.PrivateKey, cert *x509.Certificate) *tls.Config {
	tc := m.ClientTLS()
	tc.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
	return tc
}

func TestSSOLoginGivesACertificateThatOpensSessions(t *testing.T) {
	r := newSSORig(t, 0)
	r.m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	r.m.DeviceClientWithID("other")
	key, cert := r.login(t)

	u, err := certs.VerifyUser([]*x509.Certificate{cert}, certs.PoolOf(r.userCA.Cert), time.Now())
	require.NoError(t, err)
	require.Equal(t, alice, u.Name)
	require.Equal(t, []string{"field-eng", "ops"}, u.Groups)
	require.LessOrEqual(t, time.Until(cert.NotAfter), certs.MaxUserLifetime)

	c, err := (&client.Dialer{Edge: r.m.URL(), TLSConfig: certTLS(r.m, key, cert)}).Dial(ctxT(t), "d-1")
	require.NoError(t, err)
	defer c.Close()
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	got, err := roundTrip(t, c, echo, "hello")
	require.NoError(t, err)
	require.Equal(t, "echo:HELLO", got)

	// Her rules reach d-* only.
	code, _ := dialStatus(t, r.m, "/client/other", "", certTLS(r.m, key, cert))
	require.Equal(t, http.StatusForbidden, code)

	logins := eventsOf(r.m, edge.EventUserLogin)
	require.NotEmpty(t, logins)
	require.Equal(t, alice, logins[0].Client)
	require.Equal(t, "oidc", logins[0].Auth)

	// An ID token is exchanged once: a copy of it gets nothing.
	tok, err := r.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, _, _ := r.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
	code, body, _, _ = r.exchange(t, tok)
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "exchanged already")

	// Static tokens work as before, beside the certificates.
	clientWithToken(t, r.m, "d-1", opsToken)
}

func TestBadIDTokensAreRejected(t *testing.T) {
	r := newSSORig(t, 0)
	tests := []struct {
		name   string
		claims testoidc.Claims
		want   string
	}{
		{"wrong audience", testoidc.Claims{Audience: []string{"someone-else"}}, "audience"},
		{"expired beyond the skew", testoidc.Claims{Expiry: time.Now().Add(-2 * time.Minute).Unix()}, "expired"},
		{"alg none", testoidc.Claims{Alg: "none"}, "unexpected signature algorithm"},
		{"wrong issuer", testoidc.Claims{Issuer: "http://127.0.0.1:9/other"}, "different provider"},
		{"unknown key", testoidc.Claims{UnknownKey: true}, "key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := r.idp.Mint(tt.claims)
			require.NoError(t, err)
			code, body, _, _ := r.exchange(t, tok)
			require.Equal(t, http.StatusUnauthorized, code, body)
			require.Contains(t, strings.ToLower(body), tt.want)
		})
	}
	// Within the 60 s skew an expired token still passes.
	tok, err := r.idp.Mint(testoidc.Claims{Expiry: time.Now().Add(-20 * time.Second).Unix()})
	require.NoError(t, err)
	code, body, _, _ := r.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
}

func TestUnknownKeyFloodFetchesOnceAndRotationNeedsOneRefetch(t *testing.T) {
	r := newSSORig(t, 0)
	r.login(t) // fetches the keys
	require.EqualValues(t, 1, r.idp.JWKSFetches())
	for i := 0; i < 30; i++ {
		tok, err := r.idp.Mint(testoidc.Claims{UnknownKey: true})
		require.NoError(t, err)
		code, _, _, _ := r.exchange(t, tok)
		require.Equal(t, http.StatusUnauthorized, code)
	}
	require.EqualValues(t, 1, r.idp.JWKSFetches(), "a flood of unknown key IDs reached the provider")

	_, err := r.idp.Rotate()
	require.NoError(t, err)
	tok, err := r.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, _, _ := r.exchange(t, tok)
	require.Equal(t, http.StatusUnauthorized, code, "within a minute of the last fetch: %s", body)
	r.clock.advance(61 * time.Second)
	code, body, _, _ = r.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
	require.EqualValues(t, 2, r.idp.JWKSFetches())
}

func TestExpiredUserCertificateEndsSessions(t *testing.T) {
	r := newSSORig(t, 2*time.Second)
	r.m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	key, cert := r.login(t)
	c, err := (&client.Dialer{Edge: r.m.URL(), TLSConfig: certTLS(r.m, key, cert)}).Dial(ctxT(t), "d-1")
	require.NoError(t, err)
	defer c.Close()
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	_, err = roundTrip(t, c, echo, "x") // counts as the first stream
	require.NoError(t, err)
	require.True(t, closed(c), "the live session outlived its certificate")
	code, _ := dialStatus(t, r.m, "/client/d-1", "", certTLS(r.m, key, cert))
	require.Equal(t, http.StatusUnauthorized, code)
}

func TestRevokedUserCertificateIsCut(t *testing.T) {
	r := newSSORig(t, 0)
	r.m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	key, cert := r.login(t)
	c, err := (&client.Dialer{Edge: r.m.URL(), TLSConfig: certTLS(r.m, key, cert)}).Dial(ctxT(t), "d-1")
	require.NoError(t, err)
	defer c.Close()
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	_, err = roundTrip(t, c, echo, "x")
	require.NoError(t, err)
	rev, err := edge.ParseRevocations(strings.NewReader(certs.SerialHex(cert) + "\n"))
	require.NoError(t, err)
	r.m.Server().Reload(r.m.Server().Policy, rev)
	require.True(t, closed(c))
	code, _ := dialStatus(t, r.m, "/client/d-1", "", certTLS(r.m, key, cert))
	require.Equal(t, http.StatusUnauthorized, code)
}

func TestDeviceAndUserCertificatesDoNotPassForEachOther(t *testing.T) {
	r := newSSORig(t, 0)
	r.m.DeviceClientWithID("d-1")
	// A device certificate as a user's.
	dev, err := r.m.PKI().CA.IssueDevice("d-2", certs.Options{})
	require.NoError(t, err)
	tc := r.m.ClientTLS()
	tc.Certificates = []tls.Certificate{dev.TLSCertificate()}
	code, _ := dialStatus(t, r.m, "/client/d-1", "", tc)
	require.Equal(t, http.StatusUnauthorized, code)
	// Even one signed by the user CA, without the user policy.
	fake, err := r.userCA.IssueClientWithEKU(alice, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, certs.Options{})
	require.NoError(t, err)
	tc.Certificates = []tls.Certificate{fake.TLSCertificate()}
	code, _ = dialStatus(t, r.m, "/client/d-1", "", tc)
	require.Equal(t, http.StatusUnauthorized, code)

	// A user certificate as a device's.
	key, cert := r.login(t)
	code, _ = dialStatus(t, r.m, "/device", "", certTLS(r.m, key, cert))
	require.Equal(t, http.StatusForbidden, code)
	// Even one the device CA signed.
	uc, err := r.m.PKI().CA.IssueUser(key.Public(), "d-3", nil, time.Hour)
	require.NoError(t, err)
	code, _ = dialStatus(t, r.m, "/device", "", certTLS(r.m, key, uc))
	require.Equal(t, http.StatusForbidden, code)
	_, err = certs.VerifyDevice([]*x509.Certificate{uc}, certs.PoolOf(r.m.PKI().CA.Cert), time.Now())
	require.ErrorIs(t, err, certs.ErrUserCertAsDevice)
}

func TestBearerJWTFromAConfiguredIssuer(t *testing.T) {
	r := newSSORig(t, 0)
	r.m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	good, err := r.idp.Mint(testoidc.Claims{Audience: []string{"tether-ci"}})
	require.NoError(t, err)
	c := clientWithToken(t, r.m, "d-1", good)
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	got, err := roundTrip(t, c, echo, "ci")
	require.NoError(t, err)
	require.Equal(t, "echo:CI", got)

	// An ID token for people (audience "tether") is no CI credential.
	idTok, err := r.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, _ := dialStatus(t, r.m, "/client/d-1", "Bearer "+idTok, r.m.ClientTLS())
	require.Equal(t, http.StatusUnauthorized, code)
	none, err := r.idp.Mint(testoidc.Claims{Audience: []string{"tether-ci"}, Alg: "none"})
	require.NoError(t, err)
	code, _ = dialStatus(t, r.m, "/client/d-1", "Bearer "+none, r.m.ClientTLS())
	require.Equal(t, http.StatusUnauthorized, code)
	// A JWT whose name has no rule here is forbidden, not admitted.
	stranger, err := r.idp.Mint(testoidc.Claims{Audience: []string{"tether-ci"}, Subject: "u1", Extra: map[string]any{"sub": "nobody"}})
	require.NoError(t, err)
	code, _ = dialStatus(t, r.m, "/client/d-1", "Bearer "+stranger, r.m.ClientTLS())
	require.Equal(t, http.StatusForbidden, code)
}

func TestAuthConfigEndpoint(t *testing.T) {
	r := newSSORig(t, 0)
	resp, err := r.httpClient(t).Get(r.m.URL() + "/api/auth/config")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var ans map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
	require.Equal(t, r.idp.Issuer, ans["issuer"])
	require.Equal(t, "tether", ans["client_id"])
	require.NotEmpty(t, ans["device_authorization_endpoint"])
	require.NotEmpty(t, ans["authorization_endpoint"])
	require.NotContains(t, ans, "client_secret")
}

func TestLoginWithoutARuleIsRefused(t *testing.T) {
	r := newSSORig(t, 0)
	tok, err := r.idp.Mint(testoidc.Claims{Extra: map[string]any{"email": "mallory@example.com"}})
	require.NoError(t, err)
	code, body, _, _ := r.exchange(t, tok)
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "mallory@example.com has no access")
	// Nor may a provider's claim borrow a token client's rights.
	tok, err = r.idp.Mint(testoidc.Claims{Extra: map[string]any{"email": "ops"}})
	require.NoError(t, err)
	code, body, _, _ = r.exchange(t, tok)
	require.Equal(t, http.StatusForbidden, code, body)
}

func TestExchangeBodyIsBounded(t *testing.T) {
	r := newSSORig(t, 0)
	big := bytes.Repeat([]byte("x"), 70<<10)
	resp, err := r.httpClient(t).Post(r.m.URL()+"/api/auth/exchange", "application/json", bytes.NewReader(big))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(b), "larger than")
}

func TestReloadWithoutThePersonsRuleClosesTheSession(t *testing.T) {
	r := newSSORig(t, 0)
	r.m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	key, cert := r.login(t)
	c, err := (&client.Dialer{Edge: r.m.URL(), TLSConfig: certTLS(r.m, key, cert)}).Dial(ctxT(t), "d-1")
	require.NoError(t, err)
	defer c.Close()
	_, err = roundTrip(t, c, testutil.TCPServer(t, testutil.EchoAfterEOF), "x")
	require.NoError(t, err)
	r.m.Server().Reload(testPolicy(t), nil) // the token clients only
	require.True(t, closed(c), "alice's session outlived her rule")
	code, _ := dialStatus(t, r.m, "/client/d-1", "", certTLS(r.m, key, cert))
	require.Equal(t, http.StatusForbidden, code)
	// The session's record is written once its goroutines are done,
	// which may be after the client saw the connection close.
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventClientClose && strings.Contains(e.Reason, "no rule for alice@example.com")
	})
}

// TestIDTokenExchangedOnceUnderRace: of several exchanges of one ID token
// at once, exactly one gets a certificate.
func TestIDTokenExchangedOnceUnderRace(t *testing.T) {
	r := newSSORig(t, 0)
	tok, err := r.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _, _ := r.exchange(t, tok)
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == http.StatusOK {
			ok++
		} else {
			require.Equal(t, http.StatusUnauthorized, c)
		}
	}
	require.Equal(t, 1, ok)
}

// memExchanged is an edge.ExchangedTokens in memory, shared by the edges
// of a test; err, when set, fails every claim.
type memExchanged struct {
	mu   sync.Mutex
	seen map[string]bool
	err  error
}

func (m *memExchanged) Claim(_ context.Context, key string, _ time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	if m.seen[key] {
		return false, nil
	}
	if m.seen == nil {
		m.seen = make(map[string]bool)
	}
	m.seen[key] = true
	return true, nil
}

// TestIDTokenExchangedOnceInACluster: with a shared record, an ID token
// exchanged on one edge is refused on another; while the record cannot be
// reached, exchanges are refused rather than let through.
func TestIDTokenExchangedOnceInACluster(t *testing.T) {
	a := newSSORig(t, 0)
	shared := &memExchanged{}
	a1 := newSSOEdge(t, a.idp, a.userCA, 0, shared)
	a2 := newSSOEdge(t, a.idp, a.userCA, 0, shared)
	tok, err := a.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, _, _ := a1.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
	code, body, _, _ = a2.exchange(t, tok)
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "exchanged already")
	// Without the shared record, each edge remembers its own.
	code, body, _, _ = a.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)

	shared.mu.Lock()
	shared.err = fmt.Errorf("%w: nats: timeout", edge.ErrClusterUnavailable)
	shared.mu.Unlock()
	tok, err = a.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, _, _ = a2.exchange(t, tok)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "retry in a moment")
	// Once it is back, the same token passes: the refusal did not use it up.
	shared.mu.Lock()
	shared.err = nil
	shared.mu.Unlock()
	code, body, _, _ = a2.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
}

// TestBearerJWTByRoleGroup: automation with a JWT is admitted by a role
// that matches a group of its token (no clients: entry of its name), and
// audited with the method and the role.
func TestBearerJWTByRoleGroup(t *testing.T) {
	idp, err := testoidc.Start("127.0.0.1:0", testoidc.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { idp.Close() })
	p, err := edge.NewRolePolicy(edge.RoleConfig{Roles: []edge.Role{{Name: "deploy", Match: edge.RoleMatch{Groups: []string{"deployers"}},
		Devices: []string{"d-*"}, Allow: edge.Allow{TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}}}}})
	require.NoError(t, err)
	m := newEdge(t, mock.Options{Policy: p, Auth: &edge.AuthConfig{
		JWTIssuers: []edge.JWTIssuer{{Issuer: idp.Issuer, Audiences: []string{"tether-ci"}, GroupsClaim: "roles"}}}})
	m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)

	mint := func(groups ...any) string {
		tok, err := idp.Mint(testoidc.Claims{Audience: []string{"tether-ci"}, Extra: map[string]any{"sub": "repo:fleet/deploy", "roles": groups}})
		require.NoError(t, err)
		return tok
	}
	c := clientWithToken(t, m, "d-1", mint("deployers"))
	got, err := roundTrip(t, c, testutil.TCPServer(t, testutil.EchoAfterEOF), "ci")
	require.NoError(t, err)
	require.Equal(t, "echo:CI", got)
	require.Eventually(t, func() bool {
		for _, e := range eventsOf(m, edge.EventStreamOpen) {
			if e.Client == "repo:fleet/deploy" && e.Auth == "jwt" && e.Role == "deploy" {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "no stream_open of the JWT by role deploy")

	code, _ := dialStatus(t, m, "/client/d-1", "Bearer "+mint("readers"), m.ClientTLS())
	require.Equal(t, http.StatusForbidden, code, "a JWT whose groups no role matches")
}

// TestIDTokenExchangedOnceAcrossARestart: a single edge that keeps its
// exchanged ID tokens in a file refuses, after a restart (a new edge on
// the same file), a token exchanged before it.
func TestIDTokenExchangedOnceAcrossARestart(t *testing.T) {
	a := newSSORig(t, 0)
	path := filepath.Join(t.TempDir(), "exchanged-id-tokens")
	ex, err := edge.OpenExchangedTokens(path)
	require.NoError(t, err)
	before := newSSOEdge(t, a.idp, a.userCA, 0, ex)
	tok, err := a.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, _, _ := before.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, ex.Close())

	ex, err = edge.OpenExchangedTokens(path)
	require.NoError(t, err)
	defer ex.Close()
	after := newSSOEdge(t, a.idp, a.userCA, 0, ex)
	code, body, _, _ = after.exchange(t, tok)
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "exchanged already")
	tok, err = a.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, _, _ = after.exchange(t, tok)
	require.Equal(t, http.StatusOK, code, body)
}
