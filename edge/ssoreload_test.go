package edge_test

import (
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testoidc"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// TestReloadAuthRotatesTheUserCA: a reload with the same auth section
// keeps the sessions of people; one with another user CA closes those
// whose certificate it does not verify, refuses their certificates from
// then on, signs logins with the new CA, and keeps the ID tokens
// exchanged before as used, also through sign-in turned off and on.
func TestReloadAuthRotatesTheUserCA(t *testing.T) {
	r := newSSORig(t, 0)
	r.m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	key, cert := r.login(t)
	c, err := (&client.Dialer{Edge: r.m.URL(), TLSConfig: certTLS(r.m, key, cert)}).Dial(ctxT(t), "d-1")
	require.NoError(t, err)
	defer c.Close()
	_, err = roundTrip(t, c, echo, "x")
	require.NoError(t, err)
	used, err := r.idp.Mint(testoidc.Claims{})
	require.NoError(t, err)
	code, body, _, _ := r.exchange(t, used)
	require.Equal(t, http.StatusOK, code, body)

	srv := r.m.Server()
	same := *r.auth
	require.NoError(t, srv.ReloadAuth(srv.Policy, nil, &same))
	_, err = roundTrip(t, c, echo, "y")
	require.NoError(t, err, "a reload with the same user CA closed a session it verifies")

	newCA, err := certs.NewCA("Tether user CA 2", certs.Options{})
	require.NoError(t, err)
	rotated := *r.auth
	rotated.UserCA, rotated.UserSigner = certs.PoolOf(newCA.Cert), newCA
	require.NoError(t, srv.ReloadAuth(srv.Policy, nil, &rotated))
	require.True(t, closed(c), "the session outlived its user CA")
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventClientClose && strings.Contains(e.Reason, "no longer passes under the reloaded auth section")
	})
	code, _ = dialStatus(t, r.m, "/client/d-1", "", certTLS(r.m, key, cert))
	require.Equal(t, http.StatusUnauthorized, code, "a certificate of the old user CA")

	key2, cert2 := r.login(t)
	_, err = certs.VerifyUser([]*x509.Certificate{cert2}, certs.PoolOf(newCA.Cert), r.clock.now())
	require.NoError(t, err, "a login after the reload is not signed by the new user CA")
	c2, err := (&client.Dialer{Edge: r.m.URL(), TLSConfig: certTLS(r.m, key2, cert2)}).Dial(ctxT(t), "d-1")
	require.NoError(t, err)
	defer c2.Close()
	_, err = roundTrip(t, c2, echo, "z")
	require.NoError(t, err)

	code, body, _, _ = r.exchange(t, used)
	require.Equal(t, http.StatusUnauthorized, code, "an ID token exchanged before the reload was exchanged again")
	require.Contains(t, body, "exchanged already")

	// A section that CheckAuthConfig refuses changes nothing.
	broken := rotated
	broken.UserCA = nil
	require.Error(t, srv.ReloadAuth(srv.Policy, nil, &broken))
	_, err = roundTrip(t, c2, echo, "w")
	require.NoError(t, err)

	// Sign-in turned off and on again: the ID tokens exchanged before
	// stay used (this edge keeps them in memory).
	require.NoError(t, srv.ReloadAuth(srv.Policy, nil, nil))
	code, _, _, _ = r.exchange(t, used)
	require.Equal(t, http.StatusNotFound, code, "an exchange with sign-in off")
	require.NoError(t, srv.ReloadAuth(srv.Policy, nil, &rotated))
	code, body, _, _ = r.exchange(t, used)
	require.Equal(t, http.StatusUnauthorized, code, "an ID token exchanged before sign-in was off was exchanged again")
	require.Contains(t, body, "exchanged already")
}

// TestReloadAuthDropsAJWTIssuer: the sessions of a JWT issuer that a
// reload removed close, and its tokens are refused from then on.
func TestReloadAuthDropsAJWTIssuer(t *testing.T) {
	r := newSSORig(t, 0)
	r.m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	tok, err := r.idp.Mint(testoidc.Claims{Audience: []string{"tether-ci"}})
	require.NoError(t, err)
	c := clientWithToken(t, r.m, "d-1", tok)
	_, err = roundTrip(t, c, echo, "x")
	require.NoError(t, err)

	srv := r.m.Server()
	same := *r.auth
	require.NoError(t, srv.ReloadAuth(srv.Policy, nil, &same))
	_, err = roundTrip(t, c, echo, "y")
	require.NoError(t, err, "a reload with the same issuers closed a session they accept")

	other := *r.auth
	other.JWTIssuers = []edge.JWTIssuer{{Issuer: r.idp.Issuer, Audiences: []string{"another-audience"}}}
	require.NoError(t, srv.ReloadAuth(srv.Policy, nil, &other))
	require.True(t, closed(c), "the session outlived its JWT's audience")
	code, _ := dialStatus(t, r.m, "/client/d-1", "Bearer "+tok, r.m.ClientTLS())
	require.Equal(t, http.StatusUnauthorized, code)
}

// TestReloadAuthWithoutSSOEndsWebSSOSessions: once the edge no longer
// signs people in at a provider, the web sessions signed in there end,
// terminals included.
func TestReloadAuthWithoutSSOEndsWebSSOSessions(t *testing.T) {
	r := newWebSSORig(t, 0)
	ctx := ctxT(t)
	tm := r.b.openTerm(ctx, "d-1", 80, 24)
	tm.keys(ctx, "echo up-$((1+1))\r")
	tm.expect(ctx, "up-2")

	// The same provider again: the terminal goes on.
	same := *r.auth
	require.NoError(t, r.m.Server().ReloadAuth(r.p, nil, &same))
	tm.keys(ctx, "echo still-$((2+2))\r")
	tm.expect(ctx, "still-4")

	noSSO := *r.auth
	noSSO.OIDC = nil
	require.NoError(t, r.m.Server().ReloadAuth(r.p, nil, &noSSO))
	tm.drain(ctx)
	require.Contains(t, strings.Join(tm.errs, "; "), "no longer takes sign-ins by SSO")
	resp, err := r.b.hc.Get(r.m.URL() + "/web/")
	require.NoError(t, err)
	readAll(t, resp)
	require.Equal(t, "/web/login", resp.Request.URL.Path, "the web session outlived SSO")
}
