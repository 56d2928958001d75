package edge_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testoidc"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/target"
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

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
