package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
)

// TestUserCertificateOnEveryEdge: a user certificate from one login works
// on every edge of a three-edge cluster, each verifying it offline against
// the shared user CA (no edge here knows an identity provider).
func TestUserCertificateOnEveryEdge(t *testing.T) {
	pki := certstest.New(t)
	userCA, err := certs.NewCA("test user CA", certs.Options{})
	require.NoError(t, err)
	require.NoError(t, certs.WriteFile(filepath.Join(pki.Dir, "user-ca.crt"), userCA.CertPEM(), 0o644, true))
	c := newClusterSys(t, clusterOpts{pki: pki,
		clients: "  - name: alice@example.com\n    devices: [\"dev-*\"]\n    allow: {exec: true}\n",
		extra:   "auth:\n  user_ca: {cert: user-ca.crt}\n"})
	ids := c.addAgents(1)
	c.waitListed(ids)

	key, err := certs.NewUserKey()
	require.NoError(t, err)
	cert, err := userCA.IssueUser(key.Public(), "alice@example.com", []string{"field-eng"}, time.Hour)
	require.NoError(t, err)
	kp := &certs.KeyPair{Cert: cert, Key: key}

	home := t.TempDir()
	cfgDir := filepath.Join(home, "tether")
	var profiles []string
	for _, e := range c.edges {
		profiles = append(profiles, fmt.Sprintf("  %s: {edge: %q, ca: %q}", e.id, "https://"+e.addr, pki.CAFile))
		dir := filepath.Join(cfgDir, "logins", e.id)
		require.NoError(t, kp.Save(filepath.Join(dir, "user.crt"), filepath.Join(dir, "user.key"), true))
	}
	cfg := filepath.Join(cfgDir, "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("profiles:\n"+strings.Join(profiles, "\n")+"\n"), 0o600))

	for _, e := range c.edges {
		cmd := exec.Command(bin("tether"), "--config", cfg, "--profile", e.id, "exec", ids[0], "--", "echo", "via "+e.id)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", e.id, out)
		require.Equal(t, "via "+e.id+"\n", string(out))
	}

	// Each edge audits the person by name and method.
	for _, e := range c.edges {
		b, err := os.ReadFile(filepath.Join(c.dir, "audit-"+e.id+".jsonl"))
		require.NoError(t, err)
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil && ev["event"] == "client_open" && ev["client"] == "alice@example.com" {
				found = true
			}
		}
		require.True(t, found, "%s did not audit alice's session:\n%s", e.id, b)
	}
}
