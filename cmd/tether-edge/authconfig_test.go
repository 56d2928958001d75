package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
)

// writeAuthConfigBase writes the issue's config and a user CA beside it
// (user-ca.crt, user-ca.key), and returns the config's path and the
// config as written.
func writeAuthConfigBase(t *testing.T) (string, []byte) {
	t.Helper()
	path, pki := writeIssueConfig(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.NewCA("user CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(filepath.Join(pki.Dir, "user-ca.crt"), filepath.Join(pki.Dir, "user-ca.key"), true); err != nil {
		t.Fatal(err)
	}
	return path, base
}

func TestAuthConfig(t *testing.T) {
	path, base := writeAuthConfigBase(t)
	person := strings.Replace(string(base), "clients:\n", "clients:\n  - name: alice@example.com\n    devices: [\"gw-*\"]\n    allow: {pty: true}\n", 1)
	auth := func(s string) string { return person + "auth:\n" + s }
	const oidc = "  oidc: {issuer: \"https://login.example.com\", client_id: tether}\n"
	tests := []struct {
		name, yaml string
		want       string // "" means it loads
	}{
		{"full", auth("  user_ca: {cert: user-ca.crt, key: user-ca.key}\n  max_cert_lifetime: 4h\n" + oidc +
			"  jwt_issuers:\n    - {issuer: \"https://ci.example.com\", audiences: [tether-ci], name_claim: sub}\n"), ""},
		{"verify only", auth("  user_ca: {cert: user-ca.crt}\n"), ""},
		{"person without auth", person, "needs an auth: section"},
		{"oidc without the CA key", auth("  user_ca: {cert: user-ca.crt}\n" + oidc), "auth.user_ca.key: required"},
		{"the device CA as user CA", auth("  user_ca: {cert: ca.crt}\n"), "must not be the device CA"},
		{"plain http issuer", auth("  user_ca: {cert: user-ca.crt, key: user-ca.key}\n  oidc: {issuer: \"http://login.example.com\", client_id: tether}\n"), "https"},
		{"jwt issuer without audiences", auth("  jwt_issuers:\n    - {issuer: \"https://ci.example.com\"}\n"), "audiences is required"},
		{"too long", auth("  user_ca: {cert: user-ca.crt}\n  max_cert_lifetime: 24h\n"), "auth.max_cert_lifetime"},
		{"unknown key", auth("  user_ca: {cert: user-ca.crt}\n  oidc_issuer: x\n"), "oidc_issuer"},
	}
	// With a state_dir, they are kept there.
	t.Run("state_dir", func(t *testing.T) {
		state := t.TempDir()
		yaml := auth("  user_ca: {cert: user-ca.crt, key: user-ca.key}\n"+oidc) + "state_dir: " + state + "\n"
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(state, "exchanged-id-tokens"); c.exchangedFile != want || len(c.warnings) != 0 {
			t.Fatalf("exchanged-tokens file %q (want %q), warnings %q", c.exchangedFile, want, c.warnings)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := loadConfig(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				if c.auth == nil || c.auth.UserCA == nil {
					t.Fatalf("auth not loaded: %+v", c.auth)
				}
				if !c.policy.Admit(edge.Identity{Name: "alice@example.com", Method: edge.MethodOIDC}) {
					t.Fatal("the tokenless entry does not admit alice")
				}
				if c.policy.Admit(edge.Identity{Name: "ops", Method: edge.MethodOIDC}) {
					t.Fatal("a token client's rule admits a person of its name")
				}
				// Without a state_dir, exchanged ID tokens live in memory,
				// which the edge warns of when it exchanges them.
				warned := strings.Contains(strings.Join(c.warnings, "\n"), "ID tokens exchanged for certificates in memory")
				if sso := strings.Contains(tt.yaml, "oidc:"); warned != sso || c.exchangedFile != "" {
					t.Fatalf("oidc %v: warned %v, exchanged-tokens file %q", sso, warned, c.exchangedFile)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestReloadTakesAChangedAuth: a SIGHUP applies a changed auth section,
// a replaced user CA file included, with the rest of the reload; and so
// it does when the section is removed, or added, with no restart.
func TestReloadTakesAChangedAuth(t *testing.T) {
	path, pki := writeIssueConfig(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeCA := func() *certs.KeyPair {
		ca, err := certs.NewCA("user CA", certs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.Save(filepath.Join(pki.Dir, "user-ca.crt"), filepath.Join(pki.Dir, "user-ca.key"), true); err != nil {
			t.Fatal(err)
		}
		return ca
	}
	write := func(auth string) {
		if err := os.WriteFile(path, append(append([]byte(nil), base...), auth...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const section = "auth:\n  user_ca: {cert: user-ca.crt}\n"
	first := writeCA()
	write(section)
	running, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &edge.Server{Policy: running.policy, Auth: running.auth}
	defer srv.Close()
	const applied, warning = "the auth section and its user CA", "level=WARN"
	hup := func() string {
		var buf bytes.Buffer
		reload(srv, running, path, &exchangedStore{}, slog.New(slog.NewTextHandler(&buf, nil)))
		return buf.String()
	}
	// answer is the edge's answer to a client upgrade with a user
	// certificate of ca.
	answer := func(ca *certs.KeyPair) string {
		key, err := certs.NewUserKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.IssueUser(key.Public(), "alice@example.com", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "https://edge.example.com/client/d1", nil)
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Protocol": "qbee-v1"} {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code == http.StatusUpgradeRequired {
			t.Fatalf("the request did not reach sign-in: %d %s", rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	// A user certificate of the CA the edge holds now passes its check.
	passes := func(ca *certs.KeyPair) bool { return !strings.Contains(answer(ca), "user certificate rejected") }
	// signedIn reports whether the edge knows the holder of a user
	// certificate of ca as a person (to refuse or admit), rather than
	// asking for a token.
	signedIn := func(ca *certs.KeyPair) bool { return strings.Contains(answer(ca), "alice@example.com") }
	if out := hup(); !strings.Contains(out, applied) || strings.Contains(out, warning) {
		t.Errorf("reload without a change:\n%s\nwant %q and no warning", out, applied)
	}
	if !passes(first) {
		t.Fatal("a certificate of the user CA does not pass")
	}
	write(section + "  max_cert_lifetime: 4h\n")
	if out := hup(); !strings.Contains(out, applied) || strings.Contains(out, warning) {
		t.Errorf("reload with a new max_cert_lifetime:\n%s\nwant %q and no warning", out, applied)
	}
	second := writeCA() // the same path, another CA
	if out := hup(); !strings.Contains(out, applied) {
		t.Errorf("reload with another user CA in the same file:\n%s\nwant %q", out, applied)
	}
	if passes(first) || !passes(second) {
		t.Error("after the reload, the edge does not verify user certificates with the CA now in the file")
	}
	if !signedIn(second) {
		t.Fatal("the holder of a certificate of the user CA is not signed in")
	}

	// Removed, the section signs nobody in; added again, it does.
	write("")
	if out := hup(); !strings.Contains(out, "no auth section") || strings.Contains(out, "auth section and its user CA") {
		t.Errorf("reload without the auth section:\n%s\nwant it said that there is none", out)
	}
	if signedIn(second) {
		t.Error("a reload that removed the auth section still signs people in")
	}
	write(section)
	if out := hup(); !strings.Contains(out, applied) {
		t.Errorf("reload that added the auth section again:\n%s\nwant %q", out, applied)
	}
	if !signedIn(second) || !passes(second) {
		t.Error("a reload that added the auth section does not sign people in")
	}
}

// TestReloadAddsSSO: a SIGHUP that adds auth.oidc to a single edge with a
// state_dir turns SSO on, with the record of exchanged ID tokens opened
// in the state_dir then (0600), and kept, the same one, through later
// reloads that drop and add the section again.
func TestReloadAddsSSO(t *testing.T) {
	path, base := writeAuthConfigBase(t)
	state := t.TempDir()
	write := func(extra string) {
		if err := os.WriteFile(path, append(append([]byte(nil), base...), "state_dir: "+state+"\n"+extra...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	running, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &edge.Server{Policy: running.policy}
	defer srv.Close()
	exchanged := &exchangedStore{}
	defer exchanged.Close()
	hup := func() string {
		var buf bytes.Buffer
		reload(srv, running, path, exchanged, slog.New(slog.NewTextHandler(&buf, nil)))
		return buf.String()
	}
	// GET /api/auth/config: 404 without SSO; with it, the (unreachable)
	// identity provider's answer.
	sso := func() bool {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://edge.example.com/api/auth/config", nil))
		return rec.Code != http.StatusNotFound
	}
	file := filepath.Join(state, "exchanged-id-tokens")
	if sso() {
		t.Fatal("SSO is on before the auth section")
	}

	write("auth:\n  user_ca: {cert: user-ca.crt, key: user-ca.key}\n  oidc: {issuer: \"https://login.example.com\", client_id: tether}\n")
	if out := hup(); !strings.Contains(out, "the auth section and its user CA") || strings.Contains(out, "level=ERROR") {
		t.Fatalf("reload that added auth.oidc:\n%s", out)
	}
	if !sso() {
		t.Fatal("a reload that added auth.oidc did not turn SSO on")
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the record of exchanged ID tokens: %v, %v; want %s, mode 0600", st, err, file)
	}
	opened := exchanged.file

	write("")
	hup()
	if sso() {
		t.Fatal("a reload that removed the auth section left SSO on")
	}
	write("auth:\n  user_ca: {cert: user-ca.crt, key: user-ca.key}\n  oidc: {issuer: \"https://login.example.com\", client_id: tether}\n")
	hup()
	if !sso() || exchanged.file != opened {
		t.Fatalf("SSO on again: %v, with the record opened first: %v", sso(), exchanged.file == opened)
	}
}
