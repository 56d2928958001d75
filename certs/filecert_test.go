package certs_test

import (
	"bytes"
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
