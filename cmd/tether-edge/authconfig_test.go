package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
)

func TestAuthConfig(t *testing.T) {
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
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
