package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// The web terminal's "Sign in with SSO": the authorization code flow with
// PKCE against auth.oidc's provider. /web/sso/start keeps the state, the
// nonce and the PKCE verifier in a short-lived cookie sealed with the web
// key (never in a URL the edge logs, never in the audit) and sends the
// browser to the provider; /web/sso/callback checks the state, redeems
// the code with the verifier, verifies the ID token (and its nonce) as a
// login's, and ends in the ordinary session cookie, with method "oidc".

const (
	webSSOCookie   = "tether_sso"
	webSSOPath     = "/web/sso"
	webSSOLifetime = 10 * time.Minute
	webMethodOIDC  = "oidc" // credential: the sealed identity (webOIDCCred)
)

// webSSOState is the sealed content of the tether_sso cookie.
type webSSOState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"exp"` // Unix seconds
}

// webOIDCCred is a session's credential for method "oidc": who the ID
// token named, until when. The session cookie's MAC covers it.
type webOIDCCred struct {
	Name    string   `json:"n"`
	Groups  []string `json:"g,omitempty"`
	Expires int64    `json:"exp"` // Unix seconds
	// Issuer is the identity provider's; a session of another provider
	// than the edge's ends (ReloadAuth). Empty in the cookies of earlier
	// releases, which any provider's edge takes.
	Issuer string `json:"iss,omitempty"`
}

func init() {
	webMethods[webMethodOIDC] = func(st *authState, cred string) (Identity, bool) {
		var c webOIDCCred
		if err := json.Unmarshal([]byte(cred), &c); err != nil || c.Name == "" || time.Now().Unix() >= c.Expires {
			return Identity{}, false
		}
		if st.rt == nil || st.rt.oidc == nil || c.Issuer != "" && c.Issuer != st.rt.oidc.url {
			return Identity{}, false // SSO is off, or signs in at another provider now
		}
		id := Identity{Name: c.Name, Method: MethodOIDC, Groups: c.Groups}
		return id, admitted(st.policy, id)
	}
}

// webSSOEnabled reports whether the sign-in page offers SSO.
func (s *Server) webSSOEnabled() bool {
	return s.ssoRuntime() != nil
}

// ssoRuntime returns the sign-in runtime when it has an identity
// provider, or nil. A request takes it once: a reload may replace it.
func (s *Server) ssoRuntime() *authRuntime {
	if rt := s.auth.Load().rt; rt != nil && rt.oidc != nil {
		return rt
	}
	return nil
}

func (s *Server) webOAuth(ctx context.Context, rt *authRuntime) (*oauth2.Config, error) {
	d, err := rt.oidc.keys.discovery(ctx)
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{ClientID: rt.cfg.OIDC.ClientID, ClientSecret: rt.cfg.OIDC.ClientSecret, Scopes: rt.scopes(),
		RedirectURL: s.web.origin + webSSOPath + "/callback",
		Endpoint:    oauth2.Endpoint{AuthURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}, nil
}

// serveWebSSO routes /web/sso/start and /web/sso/callback.
func (s *Server) serveWebSSO(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	rt := s.ssoRuntime()
	if rt == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case webSSOPath + "/start":
		s.serveWebSSOStart(w, r, rt)
	case webSSOPath + "/callback":
		s.serveWebSSOCallback(w, r, rt)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) serveWebSSOStart(w http.ResponseWriter, r *http.Request, rt *authRuntime) {
	oc, err := s.webOAuth(r.Context(), rt)
	if err != nil {
		s.log.Warn("web SSO: identity provider unreachable", "err", err)
		s.renderLogin(w, r, http.StatusBadGateway, "The identity provider cannot be reached; try again later, or sign in with a token.")
		return
	}
	st := webSSOState{State: randomHex(16), Nonce: randomHex(16), Verifier: oauth2.GenerateVerifier(),
		Expires: time.Now().Add(webSSOLifetime).Unix()}
	// SameSite=Lax: the provider's redirect back is a cross-site
	// navigation, on which a Strict cookie would not be sent.
	http.SetCookie(w, &http.Cookie{Name: webSSOCookie, Value: s.web.signer.seal("sso", st), Path: webSSOPath,
		MaxAge: int(webSSOLifetime / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, oc.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier),
		oauth2.SetAuthURLParam("nonce", st.Nonce)), http.StatusFound)
}

func (s *Server) serveWebSSOCallback(w http.ResponseWriter, r *http.Request, rt *authRuntime) {
	fail := func(code int, reason, msg string) {
		s.auditRejected(Event{Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Method: "web", Result: reason})
		s.log.Info("web SSO sign-in refused", "reason", reason, "remote", r.RemoteAddr)
		s.renderLogin(w, r, code, msg)
	}
	c, err := r.Cookie(webSSOCookie)
	var st webSSOState
	if err == nil {
		err = s.web.signer.open("sso", c.Value, maxWebCookie, &st)
	}
	http.SetCookie(w, &http.Cookie{Name: webSSOCookie, Value: "", Path: webSSOPath, MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	q := r.URL.Query()
	switch {
	case err != nil || time.Now().Unix() >= st.Expires:
		fail(http.StatusBadRequest, "bad_sso_state", "The sign-in took too long or did not start here; sign in again.")
		return
	case !checkToken(q.Get("state"), st.State):
		fail(http.StatusBadRequest, "bad_sso_state", "The sign-in came back with another state; sign in again.")
		return
	case q.Get("error") != "":
		fail(http.StatusUnauthorized, "sso_refused", "The identity provider refused the sign-in: "+q.Get("error")+".")
		return
	}
	oc, err := s.webOAuth(r.Context(), rt)
	if err != nil {
		fail(http.StatusBadGateway, "idp_unreachable", "The identity provider cannot be reached; try again later.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), idpTimeout)
	defer cancel()
	if hc := rt.cfg.HTTPClient; hc != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	}
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		fail(http.StatusUnauthorized, "bad_code", "The identity provider did not accept the sign-in; sign in again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	id, _, err := rt.oidc.verify(ctx, raw, st.Nonce, MethodOIDC)
	if err != nil {
		fail(http.StatusUnauthorized, "bad_id_token", "The sign-in was refused: "+err.Error())
		return
	}
	if !admitted(s.auth.Load().policy, id) {
		fail(http.StatusForbidden, "forbidden", fmt.Sprintf("%s has no access on this edge; ask an operator for a rule.", id.Name))
		return
	}
	now := time.Now()
	exp := now.Add(min(s.web.lifetime, rt.maxLife))
	cred, err := json.Marshal(webOIDCCred{Name: id.Name, Groups: id.Groups, Expires: exp.Unix(), Issuer: rt.oidc.url})
	if err != nil || len(cred) > maxWebCred {
		fail(http.StatusBadRequest, "too_many_groups", "Your identity carries too many groups for a web session; use `tether login`.")
		return
	}
	sess := webSession{V: 1, ID: randomHex(16), Method: webMethodOIDC, Cred: string(cred), Issued: now.Unix(), Active: now.Unix()}
	s.setWebSession(w, sess)
	s.audit.Audit(Event{Time: now, Kind: EventWebSignIn, Client: id.Name, RemoteAddr: r.RemoteAddr, Method: "web", Result: "ok", Reason: "oidc"})
	s.log.Info("web sign-in", "client", id.Name, "method", "oidc", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/web/", http.StatusSeeOther)
}
