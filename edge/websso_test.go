package edge_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testoidc"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// ssoBrowser follows redirects across the edge and the provider, as a
// browser does, keeping cookies per host.
func ssoBrowser(t *testing.T, m *mock.EdgeMock) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	tr := &http.Transport{TLSClientConfig: m.ClientTLS()}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}
}

func TestWebSignInWithSSO(t *testing.T) {
	idp, err := testoidc.Start("127.0.0.1:0", testoidc.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { idp.Close() })
	userCA, err := certs.NewCA("user CA", certs.Options{})
	require.NoError(t, err)
	p, err := edge.NewStaticPolicy(append(testRules(), edge.ClientRule{Name: alice, Devices: []string{"d-*"},
		TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}, PTY: true}))
	require.NoError(t, err)
	m := newEdge(t, mock.Options{Policy: p, Web: &edge.WebConfig{Key: webKey},
		Auth: &edge.AuthConfig{UserCA: certs.PoolOf(userCA.Cert), UserSigner: userCA,
			OIDC: &edge.OIDCConfig{Issuer: idp.Issuer, ClientID: idp.ClientID}}})
	m.DeviceClientWithID("d-1")
	hc := ssoBrowser(t, m)

	resp, err := hc.Get(m.URL() + "/web/login")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Start, the provider's login, the callback, then the device list.
	resp, err = hc.Get(m.URL() + "/web/sso/start")
	require.NoError(t, err)
	body := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "/web/", resp.Request.URL.Path)
	require.Contains(t, body, "d-1")
	u, _ := url.Parse(m.URL() + "/web/")
	var sess *http.Cookie
	for _, c := range hc.Jar.Cookies(u) {
		if c.Name == "tether_session" {
			sess = c
		}
	}
	require.NotNil(t, sess, "no session cookie")
	ins := eventsOf(m, edge.EventWebSignIn)
	require.NotEmpty(t, ins)
	require.Equal(t, alice, ins[0].Client)

	// A callback without the state cookie, or with another state, is
	// refused and sets no session.
	fresh := ssoBrowser(t, m)
	resp, err = fresh.Get(m.URL() + "/web/sso/callback?code=x&state=y")
	require.NoError(t, err)
	body = readAll(t, resp)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	for _, c := range fresh.Jar.Cookies(u) {
		require.NotEqual(t, "tether_session", c.Name)
	}
	for _, e := range m.AuditEvents() {
		require.NotContains(t, e.Reason, "code=")
	}
}

// webSSORig is an edge with the web terminal and SSO sign-in against a
// test provider, a device d-1 that serves shells, and a browser signed in
// as alice by SSO.
type webSSORig struct {
	m    *mock.EdgeMock
	p    edge.Policy
	auth *edge.AuthConfig
	b    *browser
}

// newWebSSORig starts it, with user certificates (and web sessions of
// SSO) of at most life.
func newWebSSORig(t *testing.T, life time.Duration) *webSSORig {
	t.Helper()
	idp, err := testoidc.Start("127.0.0.1:0", testoidc.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { idp.Close() })
	userCA, err := certs.NewCA("user CA", certs.Options{})
	require.NoError(t, err)
	p, err := edge.NewStaticPolicy(append(testRules(), edge.ClientRule{Name: alice, Devices: []string{"d-*"}, PTY: true}))
	require.NoError(t, err)
	auth := &edge.AuthConfig{UserCA: certs.PoolOf(userCA.Cert), UserSigner: userCA, MaxCertLifetime: life,
		OIDC: &edge.OIDCConfig{Issuer: idp.Issuer, ClientID: idp.ClientID}}
	m := newEdge(t, mock.Options{Policy: p, Web: &edge.WebConfig{Key: webKey}, Auth: auth})
	dc := m.DeviceClientWithID("d-1")
	srv := &pty.Server{Config: pty.Config{Enabled: true, Shell: "/bin/sh"}}
	dc.Handle(wire.MsgPTY, srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })

	b := &browser{t: t, hc: ssoBrowser(t, m), origin: m.URL()}
	resp, err := b.hc.Get(m.URL() + "/web/sso/start")
	require.NoError(t, err)
	body := readAll(t, resp)
	require.Equal(t, "/web/", resp.Request.URL.Path, body)
	return &webSSORig{m: m, p: p, auth: auth, b: b}
}

// TestWebSSOTerminalEndsWithTheIdentity: a terminal of an SSO session
// closes when the identity expires (auth.max_cert_lifetime), as that
// identity's CLI session would.
func TestWebSSOTerminalEndsWithTheIdentity(t *testing.T) {
	r := newWebSSORig(t, 5*time.Second)
	ctx := ctxT(t)
	tm := r.b.openTerm(ctx, "d-1", 80, 24)
	tm.keys(ctx, "echo up-$((1+1))\r")
	tm.expect(ctx, "up-2")
	tm.drain(ctx)
	require.Nil(t, tm.exit)
	require.Contains(t, strings.Join(tm.errs, "; "), "expired")
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
