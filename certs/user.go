package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// User certificates are short-lived client certificates that the edge
// signs after an SSO login, with a user CA of their own, never the device
// CA. One carries:
//
//   - Subject CN: the user's name (the configured claim, such as email);
//   - URI SANs: tether://user/<name> and one tether://group/<group> per
//     group, each path-escaped;
//   - the ClientAuth EKU and the Tether user certificate policy
//     (OIDUserPolicy) in its certificate policies, which device
//     certificates never carry: VerifyUser requires it and VerifyDevice
//     refuses it, so neither kind passes for the other even when an
//     operator points both settings at the same CA.

// OIDUserPolicy is the certificate policy under which the edge issues
// user certificates; it marks a certificate as a user's. It is in the 2.25
// arc (ITU-T X.667: an OID made from a UUID), so it needs no registration.
var OIDUserPolicy = mustOID("2.25.311883071548071356215245232916186466519")

func mustOID(s string) x509.OID {
	o, err := x509.ParseOID(s)
	if err != nil {
		panic(err)
	}
	return o
}

// MaxUserLifetime bounds every user certificate: a login lasts 8 hours at
// most, whatever the configuration says.
const MaxUserLifetime = 8 * time.Hour

// userBackdate is how far a user certificate's validity starts before now:
// the clock skew tolerated between the edges.
const userBackdate = 60 * time.Second

// Sentinel errors of user certificates.
var (
	// ErrNotUserCert: a certificate presented as a user's lacks the
	// Tether user EKU (it is a device or other client certificate).
	ErrNotUserCert = errors.New("certs: not a user certificate (it lacks the Tether user certificate policy); sign in with `tether login`")
	// ErrUserCertAsDevice: a user certificate presented as a device's.
	ErrUserCertAsDevice = errors.New("certs: a user certificate cannot authenticate a device")
)

// User is the identity a user certificate carries.
type User struct {
	Name   string
	Groups []string
	// NotAfter is when the certificate expires; Serial is its serial
	// number in lowercase hex (SerialHex).
	NotAfter time.Time
	Serial   string
}

// Limits of what a user certificate may carry.
const (
	maxUserName  = 256
	maxGroups    = 64
	maxGroupName = 256
)

// CheckUser checks a name and groups before they go into a certificate:
// non-empty, bounded and free of control characters.
func CheckUser(name string, groups []string) error {
	if err := checkUserField("name", name, maxUserName); err != nil {
		return err
	}
	if len(groups) > maxGroups {
		return fmt.Errorf("certs: %d groups; at most %d fit in a user certificate", len(groups), maxGroups)
	}
	for _, g := range groups {
		if err := checkUserField("group", g, maxGroupName); err != nil {
			return err
		}
	}
	return nil
}

func checkUserField(what, s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("certs: user %s %q must be 1 to %d bytes", what, s, max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("certs: user %s %q contains a control character", what, s)
		}
	}
	return nil
}

// IssueUser signs a user certificate for pub (an ECDSA P-256 key) with the
// user CA ca. The lifetime is capped at MaxUserLifetime; validity starts a
// minute before now, for clock skew.
func (ca *KeyPair) IssueUser(pub crypto.PublicKey, name string, groups []string, lifetime time.Duration) (*x509.Certificate, error) {
	if err := CheckUser(name, groups); err != nil {
		return nil, err
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("certs: a user key must be ECDSA P-256")
	}
	if !ca.Cert.IsCA {
		return nil, ErrNotCA
	}
	if lifetime <= 0 || lifetime > MaxUserLifetime {
		lifetime = MaxUserLifetime
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-userBackdate),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Policies:     []x509.OID{OIDUserPolicy},
		URIs:         []*url.URL{userURI("user", name)},
	}
	for _, g := range groups {
		tmpl.URIs = append(tmpl.URIs, userURI("group", g))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign user certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func userURI(kind, v string) *url.URL {
	return &url.URL{Scheme: "tether", Host: kind, Path: "/" + v, RawPath: "/" + url.PathEscape(v)}
}

// IsUserCert reports whether c carries the Tether user certificate
// policy.
func IsUserCert(c *x509.Certificate) bool {
	for _, o := range c.Policies {
		if o.Equal(OIDUserPolicy) {
			return true
		}
	}
	return false
}

// VerifyUser checks a user certificate chain against the user CA roots at
// now: validity, the chain, the ClientAuth and Tether user EKUs. It
// returns the name (the Subject CN, which must match the tether://user
// SAN) and the groups. It makes no network call.
func VerifyUser(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (User, error) {
	if len(chain) == 0 {
		return User{}, errors.New("certs: no user certificate presented")
	}
	if !IsUserCert(chain[0]) {
		return User{}, ErrNotUserCert
	}
	name, err := verifyClientChain(chain, roots, now, "user")
	if err != nil {
		return User{}, err
	}
	u := User{Name: name, NotAfter: chain[0].NotAfter, Serial: SerialHex(chain[0])}
	sawName := false
	for _, uri := range chain[0].URIs {
		if uri.Scheme != "tether" {
			continue
		}
		v := strings.TrimPrefix(uri.Path, "/")
		switch uri.Host {
		case "user":
			if v != name {
				return User{}, fmt.Errorf("certs: user certificate names %q in its CN but %q in its SAN", name, v)
			}
			sawName = true
		case "group":
			u.Groups = append(u.Groups, v)
		}
	}
	if !sawName {
		return User{}, errors.New("certs: user certificate lacks its tether://user SAN")
	}
	return u, nil
}

// NewUserKey generates the P-256 key of a login.
func NewUserKey() (*ecdsa.PrivateKey, error) { return newKey() }

// UserCSR makes the certificate request a login sends with its ID token:
// it proves the possession of key.
func UserCSR(key crypto.Signer) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
}
