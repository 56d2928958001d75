//go:build linux

package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
)

// TestRolesWithSSOEndToEnd: an edge whose people have roles only (no
// clients: entry of theirs). Alice signs in with the device flow (run
// `tether login`, open the address, approve the code: three steps); her
// group field-eng gives her the devices labelled site=berlin-* by their
// certificates, with shells and tunnels to loopback; the paris device is
// refused with the reason, the device list filters by label, the audit
// names her, the method and the role, and `tether-edge policy check`
// answers the same from the configuration.
func TestRolesWithSSOEndToEnd(t *testing.T) {
	issuer := startIdP(t)
	caDir := t.TempDir()
	_, errOut, code := runTether(t, baseEnv(t), "", "certs", "user-ca", "--dir", caDir)
	require.Equal(t, 0, code, errOut)
	f := newFleetWith(t, fmt.Sprintf(`roles:
  - name: field-eng
    match: {groups: [field-eng]}
    devices: {labels: {site: "berlin-*"}}
    allow: {pty: true, exec: true, tcp: ["127.0.0.1:*"]}
auth:
  user_ca: {cert: %q, key: %q}
  oidc: {issuer: %q, client_id: tether}
`, filepath.Join(caDir, "user-ca.crt"), filepath.Join(caDir, "user-ca.key"), issuer))

	// The devices' certificates carry their labels.
	require.NoError(t, f.pki.CA.Save(filepath.Join(f.dir, "ca.crt"), filepath.Join(f.dir, "ca.key"), true))
	for id, site := range map[string]string{"gw-1": "berlin-1", "gw-2": "paris-1"} {
		_, errOut, code := runTether(t, baseEnv(t), "", "certs", "device", "--dir", f.dir, id, "--label", "site="+site)
		require.Equal(t, 0, code, errOut)
		f.startAgent(id, "")
	}

	env := baseEnv(t)
	global := []string{"--edge", f.edgeURL(), "--ca", f.pki.CAFile}
	tether := func(stdin string, args ...string) (string, string, int) {
		return runTether(t, env, stdin, append(global, args...)...)
	}

	// Step 1: tether login prints an address and a code.
	login := spawn(t, false, env, "tether", append(global, "login")...)
	var verifyURL, userCode string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`(?s)(http://\S+).*enter the code (\S+)`).FindStringSubmatch(login.Stderr())
		if m != nil {
			verifyURL, userCode = m[1], m[2]
		}
		return m != nil
	}, 30*time.Second, 20*time.Millisecond, "login printed no address and code:\n%s", login.Stderr())
	require.True(t, strings.HasPrefix(verifyURL, issuer), "the address is the provider's: %s", verifyURL)
	// Step 2: open the address (the provider's page for the code).
	resp, err := http.Get(verifyURL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// Step 3: enter the code and approve, as user u1.
	resp, err = http.Post(issuer+"/test/approve?user_code="+userCode+"&user=u1", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 0, exitCode(t, login), login.Stderr())
	require.Contains(t, login.Stdout(), "Signed in as alice@example.com (groups: field-eng, ops)")

	out, errOut, code := tether("", "whoami")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "alice@example.com (oidc)")
	require.Contains(t, out, "groups: field-eng, ops")
	require.Regexp(t, `expires: .* \(in [0-9hms]+\)`, out)

	// Berlin: commands and tunnels to loopback.
	out, errOut, code = tether("", "exec", "gw-1", "--", "echo", "hi")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "hi\n", out)
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	out, errOut, code = tether("through the role", "nc", "gw-1", echo)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "echo:THROUGH THE ROLE", out)
	// Elsewhere than loopback, the role says what it allows.
	_, errOut, code = tether("x", "nc", "gw-1", "10.0.0.5:22")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "role field-eng allows tcp only to 127.0.0.1:*")
	// Paris: no role of hers covers it.
	_, errOut, code = tether("", "exec", "gw-2", "--", "true")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "no role gives alice@example.com access to device gw-2")

	out, errOut, code = tether("", "devices", "-l", "site=berlin-1", "-o", "json", "--status", "all")
	require.Equal(t, 0, code, errOut)
	var list []struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Len(t, list, 1, out)
	require.Equal(t, "gw-1", list[0].ID)
	require.Equal(t, map[string]string{"site": "berlin-1"}, list[0].Labels)
	// Her own list holds only what her roles cover, without a filter too.
	out, errOut, code = tether("", "devices", "-o", "json", "--status", "all")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"gw-1"`)
	require.NotContains(t, out, `"gw-2"`)

	// The audit names the person, the method and the role.
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(f.edge.Stdout(), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil && ev["event"] == "stream_open" && ev["device"] == "gw-1" &&
				ev["client"] == "alice@example.com" && ev["auth"] == "oidc" && ev["role"] == "field-eng" {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no stream_open of alice (oidc) by role field-eng:\n%s", f.edge.Stdout())

	// The operator's check from the configuration agrees.
	check := func(site string) (string, int) {
		out, errOut, code := runCmd(t, env, "", "tether-edge", "policy", "check", "--config", filepath.Join(f.dir, "edge.yaml"),
			"--as", "alice@example.com", "--group", "field-eng", "--device", "gw-1", "--label", "site="+site, "tcp", "127.0.0.1:22")
		return out + errOut, code
	}
	out, code = check("berlin-1")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "yes: alice@example.com (oidc) (by role field-eng) may open tcp 127.0.0.1:22 on device gw-1")
	out, code = check("paris-1")
	require.NotEqual(t, 0, code, out)
	require.Contains(t, out, "no: no role gives alice@example.com access to device gw-1")
}
