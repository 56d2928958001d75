package edge

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// An IdentityAdmitter is a Policy that has rules for people and automation
// proven other than by its own tokens: by a user certificate (Method
// "oidc") or a bearer JWT (Method "jwt"). The edge asks Admit when such a
// client connects and again on every Reload; DeviceAllowed and Authorize
// then decide as for any identity. A Policy without it admits none of
// them: deny by default.
//
// StaticPolicy admits an identity when a client rule has its name and no
// token (a `clients:` entry without token_sha256); a rule with a token
// never matches a certificate or JWT of the same name, so that a
// provider's claim cannot borrow a service account's rights. A policy of
// roles replaces this by matching names and groups.
type IdentityAdmitter interface {
	Admit(id Identity) bool
}

// personal reports whether id was proven by something other than a
// static token.
func personal(id Identity) bool { return id.Method == MethodOIDC || id.Method == MethodJWT }

// Admit admits every identity. For tests only.
func (AllowAll) Admit(Identity) bool { return true }

// admitted reports whether p admits id (see IdentityAdmitter).
func admitted(p Policy, id Identity) bool {
	a, ok := p.(IdentityAdmitter)
	return ok && a.Admit(id)
}

// authenticatePersonal authenticates a client by a user certificate (no
// Authorization header, a TLS client certificate) or a bearer JWT. handled
// is false when the request carries neither, and the token path goes on;
// otherwise ok says whether it passed, and on failure it has answered.
func (s *Server) authenticatePersonal(w http.ResponseWriter, r *http.Request, st *authState) (cred credential, handled, ok bool) {
	rt := st.rt
	if rt == nil {
		return credential{}, false, false
	}
	authz := r.Header.Get("Authorization")
	switch {
	case authz == "" && r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		id, user, err := rt.verifyUserCert(r.TLS.PeerCertificates)
		if err != nil {
			s.auditRejected(Event{Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Auth: MethodOIDC, Result: "bad_certificate", Reason: err.Error()})
			s.refuse(w, r, http.StatusUnauthorized, "bad_certificate", "user certificate rejected: "+err.Error()+"; run `tether login`")
			return credential{}, true, false
		}
		if st.revoked.Has(user.Serial) {
			s.auditRejected(Event{Kind: EventClientRejected, Client: id.Name, Auth: MethodOIDC, RemoteAddr: r.RemoteAddr, Serial: user.Serial, Result: "revoked"})
			s.refuse(w, r, http.StatusUnauthorized, "revoked", "user certificate rejected: serial "+user.Serial+" is revoked; ask an operator")
			return credential{}, true, false
		}
		cred, handled, ok := s.admitPersonal(w, r, st, id, user.NotAfter, user.Serial)
		cred.chain = r.TLS.PeerCertificates
		return cred, handled, ok
	case len(rt.jwt) > 0:
		tok, problem := clientToken(authz)
		if problem != "" || !looksLikeJWT(tok) {
			return credential{}, false, false
		}
		jid, exp, err := rt.verifyJWT(r.Context(), tok)
		if err != nil {
			s.auditRejected(Event{Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Auth: MethodJWT, Result: "bad_jwt", Reason: err.Error()})
			s.refuse(w, r, http.StatusUnauthorized, "bad_jwt", "JWT rejected: "+err.Error())
			return credential{}, true, false
		}
		cred, handled, ok := s.admitPersonal(w, r, st, jid, exp.Add(clockSkew), "")
		cred.jwt = tok
		return cred, handled, ok
	}
	return credential{}, false, false
}

// admitPersonal checks that the policy has rules for id.
func (s *Server) admitPersonal(w http.ResponseWriter, r *http.Request, st *authState, id Identity, notAfter time.Time, serial string) (credential, bool, bool) {
	if !admitted(st.policy, id) {
		s.auditRejected(Event{Kind: EventClientRejected, Client: id.Name, Auth: id.Method, RemoteAddr: r.RemoteAddr, Serial: serial, Result: "forbidden"})
		s.refuse(w, r, http.StatusForbidden, "forbidden", fmt.Sprintf("%s (%s) has no access on this edge; ask an operator for a rule", id.Name, id.Method))
		return credential{}, true, false
	}
	return credential{id: id, auth: st, notAfter: notAfter, serial: serial}, true, true
}

// recheckPersonal is recheck's test of a session of a person or of
// automation: it returns why the session must close under st, or "".
// Under a new sign-in runtime (ReloadAuth) its credential is verified
// again: the user certificate against the user CA, the JWT against the
// issuers (with the keys the edge holds; an issuer whose keys must be
// fetched is given recheckTimeout).
func recheckPersonal(cs *clientSession, st *authState) string {
	switch {
	case cs.serial != "" && st.revoked.Has(cs.serial):
		return "its user certificate (serial " + cs.serial + ") was revoked"
	case !admitted(st.policy, cs.id):
		return fmt.Sprintf("the reloaded policy has no rule for %s (%s)", cs.id.Name, cs.id.Method)
	case st.rt == cs.rt:
		return ""
	}
	var id Identity
	var err error
	switch {
	case cs.chain != nil:
		id, _, err = st.rt.verifyUserCert(cs.chain)
		if err != nil {
			return "its user certificate no longer passes under the reloaded auth section: " + err.Error()
		}
	case cs.jwt != "":
		ctx, cancel := context.WithTimeout(cs.ctx, recheckTimeout)
		id, _, err = st.rt.verifyJWT(ctx, cs.jwt)
		cancel()
		if err != nil {
			return "its JWT no longer passes under the reloaded auth section: " + err.Error()
		}
	default:
		return ""
	}
	if id.Name != cs.id.Name || !slices.Equal(id.Groups, cs.id.Groups) {
		return fmt.Sprintf("under the reloaded auth section its credential names %s %v, not %s %v", id.Name, id.Groups, cs.id.Name, cs.id.Groups)
	}
	cs.rt = st.rt
	return ""
}

// recheckTimeout bounds the fetch of an issuer's keys when a reload
// checks a session's JWT again.
const recheckTimeout = 5 * time.Second

// expireAt closes cs when its credential expires, as a device session
// ends with its certificate. The returned stop ends the timer.
func (s *Server) expireAt(cs *clientSession) (stop func() bool) {
	if cs.notAfter.IsZero() {
		return func() bool { return false }
	}
	t := time.AfterFunc(time.Until(cs.notAfter), func() {
		s.log.Info("client credential expired; closing its session", "client", cs.id.Name, "method", cs.id.Method, "device", cs.device)
		s.Metrics.sessionClosed("expired")
		cs.close("expired", "the "+cs.id.Method+" credential expired at "+cs.notAfter.UTC().Format(time.RFC3339))
	})
	return t.Stop
}

// decodeSegment decodes one base64url part of a JWT.
func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
