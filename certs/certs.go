// Package certs issues and loads the certificates of a Tether deployment:
// a CA, the edge's server certificate and one client certificate per
// device, and builds the tls.Config of each party.
//
// Device identity is the Subject Common Name of the device certificate: the
// edge accepts a device whose certificate chains to the device CA and
// carries the ClientAuth extended key usage, and knows it by its CN.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Default lifetimes, as in smallstep's profiles: a long-lived root, leaf
// certificates for a year.
const (
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
	DefaultLeafLifetime = 365 * 24 * time.Hour
)

// backdate tolerates clock skew between issuer and verifier.
const backdate = 5 * time.Minute

// Sentinel errors.
var (
	// ErrNoClientAuth: a device certificate lacks the ClientAuth EKU.
	ErrNoClientAuth = errors.New("certs: certificate lacks the ClientAuth extended key usage")
	// ErrNoCommonName: a device certificate has no Subject CN, so no device ID.
	ErrNoCommonName = errors.New("certs: certificate has no subject common name (the device ID)")
	// ErrNotCA: the issuer is not a CA certificate.
	ErrNotCA = errors.New("certs: issuer is not a CA")
)

// KeyPair is a certificate with its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Options tune issuance. The zero value means ECDSA P-256 and the default
// lifetime of the certificate's kind.
type Options struct {
	// Lifetime of the certificate; zero means the kind's default.
	Lifetime time.Duration
	// NotBefore overrides the start of validity (tests use it to make
	// expired certificates), and the lifetime counts from it; zero means
	// now minus a few minutes for clock skew, with the lifetime counted
	// from now.
	NotBefore time.Time
	// URIs are URI subject alternative names for a device certificate,
	// such as the labels of transport/labels (tether://label/site=berlin).
	URIs []*url.URL
}

func (o Options) validity(def time.Duration) (time.Time, time.Time) {
	life := o.Lifetime
	if life == 0 {
		life = def
	}
	if !o.NotBefore.IsZero() {
		return o.NotBefore, o.NotBefore.Add(life)
	}
	now := time.Now()
	return now.Add(-backdate), now.Add(life)
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA creates a self-signed CA.
func NewCA(commonName string, opts Options) (*KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Tether"}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return create(tmpl, nil, opts, DefaultCALifetime)
}

// create gives tmpl a random serial number and its validity (opts, or the
// kind's default lifetime), generates its key, and signs it with issuer
// (self-signed when issuer is nil).
func create(tmpl *x509.Certificate, issuer *KeyPair, opts Options, lifetime time.Duration) (*KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, err
	}
	tmpl.NotBefore, tmpl.NotAfter = opts.validity(lifetime)
	parent, signer := tmpl, crypto.Signer(key)
	if issuer != nil {
		if !issuer.Cert.IsCA {
			return nil, ErrNotCA
		}
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("certs: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// IssueServer issues the edge's server certificate for hosts: each is a DNS
// name or an IP address and becomes a SAN. The first host is the CN.
func (ca *KeyPair) IssueServer(hosts []string, opts Options) (*KeyPair, error) {
	if len(hosts) == 0 {
		return nil, errors.New("certs: a server certificate needs at least one host name or IP")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return create(tmpl, ca, opts, DefaultLeafLifetime)
}

// IssuePeer issues an edge's peer certificate, for the sessions between the
// edges of a cluster and the routes of their NATS: Subject CN = edgeID,
// which is also its first DNS SAN, then hosts (DNS names or IPs), with both
// ServerAuth and ClientAuth, since a peer both dials and is dialed. Peer
// certificates come from their own CA, never the device CA.
func (ca *KeyPair) IssuePeer(edgeID string, hosts []string, opts Options) (*KeyPair, error) {
	if err := ValidDeviceID(edgeID); err != nil {
		return nil, fmt.Errorf("certs: edge ID: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: edgeID},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{edgeID},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != edgeID {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return create(tmpl, ca, opts, DefaultLeafLifetime)
}

// VerifyPeer checks the client certificate chain of another edge against
// the peer CA and returns its edge ID (the Subject CN).
func VerifyPeer(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (string, error) {
	return verifyClientChain(chain, roots, now, "peer")
}

// IssueDevice issues a device certificate: Subject CN = deviceID, ClientAuth.
func (ca *KeyPair) IssueDevice(deviceID string, opts Options) (*KeyPair, error) {
	if err := ValidDeviceID(deviceID); err != nil {
		return nil, err
	}
	return ca.issueClient(deviceID, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, opts)
}

// IssueClientWithEKU issues a client certificate with the given extended key
// usages (none at all when eku is empty). Tests use it for certificates the
// edge must refuse.
func (ca *KeyPair) IssueClientWithEKU(commonName string, eku []x509.ExtKeyUsage, opts Options) (*KeyPair, error) {
	return ca.issueClient(commonName, eku, opts)
}

func (ca *KeyPair) issueClient(cn string, eku []x509.ExtKeyUsage, opts Options) (*KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: eku,
		URIs:        opts.URIs,
	}
	return create(tmpl, ca, opts, DefaultLeafLifetime)
}

// ValidDeviceID checks that id can name a device: 1 to 128 characters of
// letters, digits, '.', '-', '_' and ':'.
func ValidDeviceID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("certs: device ID %q must be 1 to 128 characters", id)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '-' || r == '_' || r == ':'
		if !ok {
			return fmt.Errorf("certs: device ID %q may contain only letters, digits, '.', '-', '_' and ':'", id)
		}
	}
	return nil
}

// CertPEM returns the certificate in PEM form.
func (kp *KeyPair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.Cert.Raw})
}

// KeyPEM returns the private key in PKCS#8 PEM form.
func (kp *KeyPair) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(kp.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// TLSCertificate returns kp as a tls.Certificate.
func (kp *KeyPair) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{kp.Cert.Raw}, PrivateKey: kp.Key, Leaf: kp.Cert}
}

// Save writes the certificate (0644) and the key (0600). Existing files are
// refused unless force is set.
func (kp *KeyPair) Save(certPath, keyPath string, force bool) error {
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		return err
	}
	if err := WriteFile(keyPath, keyPEM, 0o600, force); err != nil {
		return err
	}
	return WriteFile(certPath, kp.CertPEM(), 0o644, force)
}

// WriteFile writes data to path with perm, atomically (temporary file and
// rename). An existing file is an error unless force is set.
func WriteFile(path string, data []byte, perm os.FileMode, force bool) error {
	if !force {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("certs: %s already exists; pass --force to overwrite it", path)
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// Load reads a certificate and its key from PEM files.
func Load(certPath, keyPath string) (*KeyPair, error) {
	tc, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("certs: load %s and %s: %w", certPath, keyPath, err)
	}
	signer, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certs: key in %s cannot sign", keyPath)
	}
	return &KeyPair{Cert: tc.Leaf, Key: signer}, nil
}

// LoadCertificate reads the first certificate of a PEM file.
func LoadCertificate(path string) (*x509.Certificate, error) {
	certs, err := LoadCertificates(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// LoadCertificates reads every certificate of a PEM file, in order. Blocks
// of other types are skipped; a file with no certificate is an error.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: parse %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", path)
	}
	return out, nil
}

// LoadPool reads every certificate of a PEM file into a pool.
func LoadPool(path string) (*x509.CertPool, error) {
	certs, err := LoadCertificates(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// PoolOf returns a pool holding certs.
func PoolOf(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

// VerifyDevice checks a device's certificate chain against roots at now:
// validity, a chain to the device CA, and the ClientAuth EKU, which must be
// present (a certificate with no EKU at all is refused, although Go's
// verifier would accept it); a user certificate (IsUserCert) is refused.
// It returns the device ID (the Subject CN).
func VerifyDevice(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (string, error) {
	if len(chain) > 0 && IsUserCert(chain[0]) {
		return "", ErrUserCertAsDevice
	}
	id, err := verifyClientChain(chain, roots, now, "device")
	if err != nil {
		return "", err
	}
	if err := ValidDeviceID(id); err != nil {
		return "", err
	}
	return id, nil
}

// verifyClientChain checks a client certificate chain against roots at now
// (validity, a chain to roots, the ClientAuth EKU, which must be present)
// and returns the leaf's Subject CN. what names the certificate in errors.
func verifyClientChain(chain []*x509.Certificate, roots *x509.CertPool, now time.Time, what string) (string, error) {
	if len(chain) == 0 {
		return "", fmt.Errorf("certs: no %s certificate presented", what)
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if !hasEKU(leaf, x509.ExtKeyUsageClientAuth) {
		return "", ErrNoClientAuth
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", fmt.Errorf("certs: verify %s certificate: %w", what, err)
	}
	if leaf.Subject.CommonName == "" {
		return "", ErrNoCommonName
	}
	return leaf.Subject.CommonName, nil
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want {
			return true
		}
	}
	return false
}

// SerialHex returns a certificate's serial number in lowercase hex, the form
// used by revocation lists.
func SerialHex(c *x509.Certificate) string {
	return strings.ToLower(c.SerialNumber.Text(16))
}

// EdgeTLSConfig is the edge's server configuration: TLS 1.2 minimum, its
// certificate, and client certificates requested but not required at the
// handshake, because one port serves devices (mTLS) and clients (tokens).
// The edge verifies device certificates itself with VerifyDevice; session
// tickets are off, so every connection presents its certificate afresh.
func EdgeTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequestClientCert,
		SessionTicketsDisabled: true,
		NextProtos:             []string{"http/1.1"},
	}
}

// DeviceTLSConfig is the device's client configuration: it verifies the
// edge against edgeCAs and presents the device certificate.
func DeviceTLSConfig(cert tls.Certificate, edgeCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      edgeCAs,
		Certificates: []tls.Certificate{cert},
	}
}

// ClientTLSConfig is the CLI's configuration: it verifies the edge against
// edgeCAs, or the system pool when edgeCAs is nil.
func ClientTLSConfig(edgeCAs *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: edgeCAs}
}
