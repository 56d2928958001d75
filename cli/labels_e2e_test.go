//go:build linux

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
)

// TestLabelsAndRoles runs the built binaries: device certificates labeled
// by tether certs device --label and by the edge's labels file, a role of
// a service-account token that covers devices by label, tether devices -l,
// and tether-edge policy check with its exit codes.
func TestLabelsAndRoles(t *testing.T) {
	dir := t.TempDir()
	env := baseEnv(t)
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "edge", "--dir", dir, "127.0.0.1"},
		{"certs", "device", "--dir", dir, "gw-1", "--label", "site=berlin", "-l", "tier=prod"},
		{"certs", "device", "--dir", dir, "gw-2", "--label", "site=paris"},
	} {
		out, errOut, code := runTether(t, env, "", args...)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "Your certificate has been saved in ")
	}
	_, errOut, code := runTether(t, env, "", "certs", "device", "--dir", dir, "gw-3", "--label", "site")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, `"site" is not key=value`)

	addr := testutil.FreeAddr(t)
	token, sum := testutil.NewToken(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "labels.yaml"), []byte("gw-2: {tier: test}\n"), 0o600))
	cfg := filepath.Join(dir, "edge.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: %q
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
tokens:
  - name: ci-deploy
    token_sha256: %q
roles:
  - name: berlin
    match: {tokens: [ci-deploy], groups: [field-eng]}
    devices: {labels: {site: "berl*"}}
    allow: {tcp: ["127.0.0.1:*"], exec: true}
  - name: testers
    match: {tokens: [ci-deploy]}
    devices: {ids: ["gw-*"], labels: {tier: test}}
    allow: {pty: true}
devices: {labels_file: labels.yaml}
`, addr, sum)), 0o600))
	for _, id := range []string{"gw-1", "gw-2"} {
		agentCfg := filepath.Join(dir, id+".yaml")
		require.NoError(t, os.WriteFile(agentCfg, []byte(fmt.Sprintf(`edge: "https://%s/device"
cert: %s.crt
key: %s.key
ca: ca.crt
allow: {tcp: ["127.0.0.1:*"]}
`, addr, id, id)), 0o600))
		defer spawn(t, false, env, "tether-agent", "--config", agentCfg).Stop()
	}
	spawn(t, false, env, "tether-edge", "--config", cfg)
	devices := func(args ...string) (string, string, int) {
		return runTether(t, env, "", append([]string{"--edge", "https://" + addr, "--ca", filepath.Join(dir, "ca.crt"),
			"--token", token, "devices"}, args...)...)
	}
	require.Eventually(t, func() bool {
		out, _, code := devices("-o", "json")
		return code == 0 && strings.Contains(out, `"gw-1"`) && strings.Contains(out, `"gw-2"`)
	}, 30*time.Second, 100*time.Millisecond, "the labeled devices did not connect")

	out, errOut, code := devices()
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^ID\s+STATUS\s+EDGE\s+AGE\s+VERSION\s+LABELS$`, out)
	require.Regexp(t, `(?m)^gw-1\s+online\s+.*\s+site=berlin,tier=prod$`, out)
	require.Regexp(t, `(?m)^gw-2\s+online\s+.*\s+site=paris,tier=test$`, out, "the labels file adds tier=test")
	out, errOut, code = devices("-l", "site=berlin")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "gw-1")
	require.NotContains(t, out, "gw-2")
	out, errOut, code = devices("-l", "tier!=prod", "-o", "json")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"gw-2"`)
	require.NotContains(t, out, `"gw-1"`)
	_, errOut, code = devices("-l", "site=a b")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "-l:")

	// The token reaches gw-1 by its site label, with TCP only.
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	tether := func(args ...string) (string, string, int) {
		return runTether(t, env, "", append([]string{"--edge", "https://" + addr, "--ca", filepath.Join(dir, "ca.crt"),
			"--token", token}, args...)...)
	}
	out, errOut, code = runTether(t, env, "ping", "--edge", "https://"+addr, "--ca", filepath.Join(dir, "ca.crt"),
		"--token", token, "nc", "gw-1", echo)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "echo:PING", out)
	_, errOut, code = tether("nc", "gw-2", echo)
	require.Equal(t, ExitRemote, code, errOut)
	require.Contains(t, errOut, "no role of ci-deploy on device gw-2 allows tcp (its roles there: testers)")
}

// TestPolicyCheckBinary runs tether-edge policy check: yes exits 0, no
// exits 1 with the reason, a mistake exits 2.
func TestPolicyCheckBinary(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "edge.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`listen: "127.0.0.1:8443"
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
roles:
  - name: field-eng
    match: {groups: [field-eng]}
    devices: {ids: ["gw-*"]}
    allow: {tcp: ["127.0.0.1:*"]}
`), 0o600))
	check := func(args ...string) (string, int) {
		p := spawn(t, false, baseEnv(t), "tether-edge", append([]string{"policy", "check", "--config", cfg}, args...)...)
		code := exitCode(t, p)
		return p.Stdout() + p.Stderr(), code
	}
	out, code := check("--as", "alice@example.com", "--group", "field-eng", "--device", "gw-1", "tcp", "127.0.0.1:22")
	require.Equal(t, 0, code, out)
	require.Regexp(t, regexp.MustCompile(`^yes: alice@example.com \(oidc\) \(by role field-eng\) may open tcp 127.0.0.1:22 on device gw-1`), out)
	out, code = check("--as", "alice@example.com", "--group", "field-eng", "--device", "gw-1", "tcp", "10.0.0.5:22")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "no: not allowed: tcp 10.0.0.5:22 on device gw-1 for client alice@example.com: role field-eng allows tcp only to 127.0.0.1:*")
	out, code = check("--as", "alice@example.com", "--device", "gw-1", "tcp", "10.0.0.5:22")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "no: no role gives alice@example.com access to device gw-1")
	out, code = check("--device", "gw-1", "pty")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "--as NAME or --token-name NAME is required")
}
