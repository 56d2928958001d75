//go:build linux

package cli

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
)

// startIdP runs the built test identity provider and returns its issuer.
func startIdP(t *testing.T) string {
	t.Helper()
	p := spawn(t, false, baseEnv(t), "testoidc", "--listen", "127.0.0.1:0",
		"--user", "u1:alice@example.com:field-eng,ops")
	var issuer string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`issuer (\S+)`).FindStringSubmatch(p.Stdout())
		if m != nil {
			issuer = m[1]
		}
		return m != nil
	}, 30*time.Second, 20*time.Millisecond, "the provider did not start: %s", p.Stderr())
	return issuer
}

// ssoFleet is a fleet whose edge signs people in with the test provider.
func ssoFleet(t *testing.T) (*fleet, string) {
	t.Helper()
	issuer := startIdP(t)
	caDir := t.TempDir()
	_, errOut, code := runTether(t, baseEnv(t), "", "certs", "user-ca", "--dir", caDir)
	require.Equal(t, 0, code, errOut)
	f := newFleetWith(t, fmt.Sprintf(`  - name: alice@example.com
    devices: ["d-*"]
    allow: {exec: true, tcp: ["127.0.0.1:*"]}
auth:
  user_ca: {cert: %q, key: %q}
  oidc: {issuer: %q, client_id: tether}
`, filepath.Join(caDir, "user-ca.crt"), filepath.Join(caDir, "user-ca.key"), issuer))
	return f, issuer
}

func TestLoginWithTheDeviceFlowThenUseTheCertificate(t *testing.T) {
	f, issuer := ssoFleet(t)
	f.addAgent("d-1", "")
	env := baseEnv(t)
	home := strings.TrimPrefix(env[1], "HOME=")
	global := []string{"--edge", f.edgeURL(), "--ca", f.pki.CAFile}

	// Not signed in: no credential at all.
	_, errOut, code := runTether(t, env, "", append(global, "exec", "d-1", "--", "echo", "hi")...)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "tether login")

	login := spawn(t, false, env, "tether", append(global, "login")...)
	var userCode string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`enter the code (\S+)`).FindStringSubmatch(login.Stderr())
		if m != nil {
			userCode = m[1]
		}
		return m != nil
	}, 30*time.Second, 20*time.Millisecond, "login printed no code:\n%s", login.Stderr())
	resp, err := http.Post(issuer+"/test/approve?user_code="+userCode+"&user=u1", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 0, exitCode(t, login), login.Stderr())
	require.Contains(t, login.Stdout(), "Signed in as alice@example.com (groups: field-eng, ops)")

	dir := filepath.Join(home, ".config", "tether", "logins", "edge-"+strings.ReplaceAll(f.addr, ":", "_"))
	for _, name := range []string{"user.key", "user.crt"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}

	out, errOut, code := runTether(t, env, "", append(global, "whoami")...)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "alice@example.com (oidc)")
	require.Contains(t, out, "groups: field-eng, ops")
	require.Regexp(t, `expires: .* \(in [0-9hms]+\)`, out)

	// The certificate replaces the token, for the device list too.
	out, errOut, code = runTether(t, env, "", append(global, "devices", "-o", "json")...)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"d-1"`)
	out, errOut, code = runTether(t, env, "", append(global, "exec", "d-1", "--", "echo", "hi")...)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "hi\n", out)
	// Her rules reach d-* only: lab-* is refused.
	f.addAgent("lab-1", "")
	_, errOut, code = runTether(t, env, "", append(global, "exec", "lab-1", "--", "true")...)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "alice@example.com")

	// Static tokens keep working beside it.
	out, errOut, code = f.tether("", "exec", "d-1", "--", "echo", "token")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "token\n", out)

	// An expired certificate says so and what to do.
	writeExpiredLogin(t, dir)
	_, errOut, code = runTether(t, env, "", append(global, "exec", "d-1", "--", "true")...)
	require.NotEqual(t, 0, code)
	require.Regexp(t, "your login expired at .*; run `tether login`", errOut)

	out, errOut, code = runTether(t, env, "", append(global, "logout")...)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "signed out")
	_, err = os.Stat(filepath.Join(dir, "user.key"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, errOut, code = runTether(t, env, "", append(global, "whoami")...)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "not signed in")
}

// writeExpiredLogin replaces the login in dir with a certificate that
// expired an hour ago.
func writeExpiredLogin(t *testing.T, dir string) {
	t.Helper()
	ca, err := certs.NewCA("old", certs.Options{})
	require.NoError(t, err)
	key, err := certs.NewUserKey()
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "alice@example.com"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, certs.WriteFile(filepath.Join(dir, "user.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600, true))
	require.NoError(t, certs.WriteFile(filepath.Join(dir, "user.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600, true))
}

func TestLoginWithABrowser(t *testing.T) {
	f, _ := ssoFleet(t)
	env := baseEnv(t)
	global := []string{"--edge", f.edgeURL(), "--ca", f.pki.CAFile}
	login := spawn(t, false, env, "tether", append(global, "login", "--browser")...)
	var authURL string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`(?m)^(http://\S+/authorize\?\S+)$`).FindStringSubmatch(login.Stderr())
		if m != nil {
			authURL = m[1]
		}
		return m != nil
	}, 30*time.Second, 20*time.Millisecond, "login printed no address:\n%s", login.Stderr())
	require.Contains(t, authURL, "code_challenge_method=S256")
	require.Contains(t, authURL, "nonce=")
	// The browser: the provider signs the user in and redirects to the
	// CLI's loopback listener.
	resp, err := http.Get(authURL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 0, exitCode(t, login), login.Stderr())
	require.Contains(t, login.Stdout(), "Signed in as alice@example.com")
}
