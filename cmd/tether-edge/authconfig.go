package main

import (
	"crypto/x509"
	"fmt"
	"strconv"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
)

// authFileConfig is the auth: section: sign-in by SSO, user certificates
// and JWTs (docs/edge.md, "Sign-in").
type authFileConfig struct {
	UserCA          userCAConfig      `yaml:"user_ca"`
	MaxCertLifetime time.Duration     `yaml:"max_cert_lifetime"`
	OIDC            *oidcFileConfig   `yaml:"oidc"`
	JWTIssuers      []jwtIssuerConfig `yaml:"jwt_issuers"`
}

type userCAConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

type oidcFileConfig struct {
	Issuer       string   `yaml:"issuer"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"`
	NameClaim    string   `yaml:"name_claim"`
	GroupsClaim  string   `yaml:"groups_claim"`
	Audiences    []string `yaml:"audiences"`
}

type jwtIssuerConfig struct {
	Issuer      string   `yaml:"issuer"`
	Audiences   []string `yaml:"audiences"`
	NameClaim   string   `yaml:"name_claim"`
	GroupsClaim string   `yaml:"groups_claim"`
}

// configured reports whether the section asks for anything.
func (a *authFileConfig) configured() bool {
	return a.UserCA.Cert != "" || a.UserCA.Key != "" || a.OIDC != nil || len(a.JWTIssuers) > 0 || a.MaxCertLifetime != 0
}

// parseAuth checks the auth: section; nil when it is empty. With
// loadFiles it reads the user CA, which must not be the device CA.
func parseAuth(a authFileConfig, deviceCA string, loadFiles bool, bad func(string, ...string) error, rel func(string) string) (*edge.AuthConfig, error) {
	if !a.configured() {
		return nil, nil
	}
	if a.MaxCertLifetime < 0 || a.MaxCertLifetime > certs.MaxUserLifetime {
		return nil, bad(fmt.Sprintf("%v: between 0 (the default, %v) and %v", a.MaxCertLifetime, certs.MaxUserLifetime, certs.MaxUserLifetime), "auth", "max_cert_lifetime")
	}
	cfg := &edge.AuthConfig{MaxCertLifetime: a.MaxCertLifetime}
	if o := a.OIDC; o != nil {
		cfg.OIDC = &edge.OIDCConfig{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes,
			NameClaim: o.NameClaim, GroupsClaim: o.GroupsClaim, Audiences: o.Audiences}
		if o.Issuer == "" {
			return nil, bad("required: the identity provider's issuer URL", "auth", "oidc", "issuer")
		}
		if a.UserCA.Key == "" {
			return nil, bad("required with oidc: the user CA's key, which signs the certificates of a login (`tether certs user-ca`)", "auth", "user_ca", "key")
		}
	}
	if a.UserCA.Key != "" && a.UserCA.Cert == "" {
		return nil, bad("required with user_ca.key: the user CA certificate", "auth", "user_ca", "cert")
	}
	for i, j := range a.JWTIssuers {
		cfg.JWTIssuers = append(cfg.JWTIssuers, edge.JWTIssuer{Issuer: j.Issuer, Audiences: j.Audiences, NameClaim: j.NameClaim, GroupsClaim: j.GroupsClaim})
		if j.Issuer == "" {
			return nil, bad("required: the issuer URL", "auth", "jwt_issuers", strconv.Itoa(i), "issuer")
		}
	}
	if loadFiles && a.UserCA.Cert != "" {
		certPath := rel(a.UserCA.Cert)
		ca, err := certs.LoadCertificate(certPath)
		if err != nil {
			return nil, bad(err.Error(), "auth", "user_ca", "cert")
		}
		if dev, err := certs.LoadCertificate(deviceCA); err == nil && dev.Equal(ca) {
			return nil, bad("the user CA must not be the device CA: make one with `tether certs user-ca`", "auth", "user_ca", "cert")
		}
		cfg.UserCA = certs.PoolOf(ca)
		if a.UserCA.Key != "" {
			kp, err := certs.Load(certPath, rel(a.UserCA.Key))
			if err != nil {
				return nil, bad(err.Error(), "auth", "user_ca", "key")
			}
			cfg.UserSigner = kp
		}
	} else if a.UserCA.Cert != "" || a.UserCA.Key != "" {
		// Checked without the files: stand-ins, so that the checks below
		// see what the edge will have.
		cfg.UserCA = x509.NewCertPool()
		if a.UserCA.Key != "" {
			cfg.UserSigner = &certs.KeyPair{}
		}
	}
	if err := edge.CheckAuthConfig(cfg); err != nil {
		return nil, bad(err.Error(), "auth")
	}
	return cfg, nil
}
