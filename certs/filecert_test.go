package certs_test

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
)

// TestFileCertFollowsRenewal replaces the certificate files and checks
// that the next handshake gets the new certificate, with the chain its
// file holds, and that files that do not load keep the previous one.
func TestFileCertFollowsRenewal(t *testing.T) {
	ca, err := certs.NewCA("test CA", certs.Options{})
	require.NoError(t, err)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "edge.crt"), filepath.Join(dir, "edge.key")
	issue := func() *certs.KeyPair {
		kp, err := ca.IssueServer([]string{"127.0.0.1"}, certs.Options{})
		require.NoError(t, err)
		require.NoError(t, kp.Save(crt, key, true))
		return kp
	}
	first := issue()
	var logs bytes.Buffer
	fc, err := certs.NewFileCert(crt, key, "edge certificate", slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	got, err := fc.GetCertificate(nil)
	require.NoError(t, err)
	require.Equal(t, first.Cert.SerialNumber, got.Leaf.SerialNumber)
	require.Empty(t, logs.String(), "the first load is not a reload")

	// A renewal, written as a full chain (the CA after the leaf).
	second := issue()
	f, err := os.OpenFile(crt, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.Write(ca.CertPEM())
	require.NoError(t, err)
	require.NoError(t, f.Close())
	bump(t, crt, key, time.Minute)
	got, err = fc.GetClientCertificate(nil)
	require.NoError(t, err)
	require.Equal(t, second.Cert.SerialNumber, got.Leaf.SerialNumber, "the renewed certificate is used")
	require.Len(t, got.Certificate, 2, "the chain in the file is served whole")
	require.Contains(t, logs.String(), "edge certificate reloaded from disk")

	require.NoError(t, os.WriteFile(key, []byte("not a key"), 0o600))
	bump(t, crt, key, 2*time.Minute)
	got, err = fc.GetCertificate(nil)
	require.NoError(t, err)
	require.Equal(t, second.Cert.SerialNumber, got.Leaf.SerialNumber, "broken files keep the previous certificate")
	require.Contains(t, logs.String(), "edge certificate files changed but do not load; still using the previous certificate")

	_, err = certs.NewFileCert(crt, key, "edge certificate", nil)
	require.ErrorContains(t, err, "edge certificate: ", "files that do not load at the start are an error")
}

// bump moves both files' modification times by.
func bump(t *testing.T, crt, key string, by time.Duration) {
	t.Helper()
	at := time.Now().Add(by)
	require.NoError(t, os.Chtimes(crt, at, at))
	require.NoError(t, os.Chtimes(key, at, at))
}

// TestFileCertVerify checks that a FileCert with a check refuses a
// certificate that fails it, at once and at a renewal, and serves the
// renewals that pass.
func TestFileCertVerify(t *testing.T) {
	ca, err := certs.NewCA("test CA", certs.Options{})
	require.NoError(t, err)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "peer.crt"), filepath.Join(dir, "peer.key")
	issue := func(name string) *certs.KeyPair {
		kp, err := ca.IssueServer([]string{name}, certs.Options{})
		require.NoError(t, err)
		require.NoError(t, kp.Save(crt, key, true))
		return kp
	}
	named := func(name string) func(*tls.Certificate) error {
		return func(c *tls.Certificate) error { return c.Leaf.VerifyHostname(name) }
	}
	issue("edge-2")
	var logs bytes.Buffer
	fc, err := certs.NewFileCert(crt, key, "peer certificate", slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.ErrorContains(t, fc.Verify(named("edge-1")), "peer certificate: x509: certificate is valid for edge-2, not edge-1",
		"the certificate served now is checked")

	first := issue("edge-1")
	fc, err = certs.NewFileCert(crt, key, "peer certificate", slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.NoError(t, fc.Verify(named("edge-1")))
	got, err := fc.GetCertificate(nil)
	require.NoError(t, err)
	require.Equal(t, first.Cert.SerialNumber, got.Leaf.SerialNumber)

	issue("edge-2")
	bump(t, crt, key, 2*time.Minute)
	got, err = fc.GetClientCertificate(nil)
	require.NoError(t, err)
	require.Equal(t, first.Cert.SerialNumber, got.Leaf.SerialNumber, "a renewal that fails the check is kept out")
	require.Contains(t, logs.String(), "peer certificate files changed but hold a certificate that fails its check; still using the previous certificate")
	require.Contains(t, logs.String(), "not edge-1")

	second := issue("edge-1")
	bump(t, crt, key, 3*time.Minute)
	got, err = fc.GetCertificate(nil)
	require.NoError(t, err)
	require.Equal(t, second.Cert.SerialNumber, got.Leaf.SerialNumber, "a renewal that passes is served")
}
