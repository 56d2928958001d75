// Package certstest makes throw-away PKIs for tests: a CA, an edge
// certificate for 127.0.0.1, ::1 and localhost, and device certificates,
// written under t.TempDir().
package certstest

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/tetherhq/tether/certs"
)

// PKI is a test PKI. Files are written under Dir.
type PKI struct {
	t   testing.TB
	Dir string
	CA  *certs.KeyPair
	// Edge is the edge's server certificate.
	Edge *certs.KeyPair
	// CAFile, EdgeCertFile and EdgeKeyFile are the PEM files of CA and Edge.
	CAFile, EdgeCertFile, EdgeKeyFile string
}

// New creates a PKI in a fresh t.TempDir().
func New(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewCA("Tether Test CA", certs.Options{})
	if err != nil {
		t.Fatalf("certstest: %v", err)
	}
	edge, err := ca.IssueServer([]string{"127.0.0.1", "::1", "localhost"}, certs.Options{})
	if err != nil {
		t.Fatalf("certstest: %v", err)
	}
	p := &PKI{t: t, Dir: dir, CA: ca, Edge: edge,
		CAFile:       filepath.Join(dir, "ca.crt"),
		EdgeCertFile: filepath.Join(dir, "edge.crt"),
		EdgeKeyFile:  filepath.Join(dir, "edge.key"),
	}
	if err := certs.WriteFile(p.CAFile, ca.CertPEM(), 0o644, true); err != nil {
		t.Fatalf("certstest: %v", err)
	}
	if err := edge.Save(p.EdgeCertFile, p.EdgeKeyFile, true); err != nil {
		t.Fatalf("certstest: %v", err)
	}
	return p
}

// Pool returns a pool holding the CA.
func (p *PKI) Pool() *x509.CertPool { return certs.PoolOf(p.CA.Cert) }

// Device issues a device certificate for id and writes it as
// Dir/<id>.crt and Dir/<id>.key.
func (p *PKI) Device(id string) *certs.KeyPair {
	p.t.Helper()
	return p.DeviceWith(id, certs.Options{})
}

// DeviceWith is Device with issuance options (an expired validity, say).
func (p *PKI) DeviceWith(id string, opts certs.Options) *certs.KeyPair {
	p.t.Helper()
	kp, err := p.CA.IssueDevice(id, opts)
	if err != nil {
		p.t.Fatalf("certstest: %v", err)
	}
	crt, key := p.DeviceFiles(id)
	if err := kp.Save(crt, key, true); err != nil {
		p.t.Fatalf("certstest: %v", err)
	}
	return kp
}

// DeviceFiles returns the certificate and key paths Device writes for id.
func (p *PKI) DeviceFiles(id string) (certFile, keyFile string) {
	return filepath.Join(p.Dir, id+".crt"), filepath.Join(p.Dir, id+".key")
}

// EdgeTLS returns the edge's server tls.Config.
func (p *PKI) EdgeTLS() *tls.Config { return certs.EdgeTLSConfig(p.Edge.TLSCertificate()) }

// DeviceTLS returns a device's tls.Config for kp.
func (p *PKI) DeviceTLS(kp *certs.KeyPair) *tls.Config {
	return certs.DeviceTLSConfig(kp.TLSCertificate(), p.Pool())
}

// ClientTLS returns a client's tls.Config trusting the CA.
func (p *PKI) ClientTLS() *tls.Config { return certs.ClientTLSConfig(p.Pool()) }
