package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// rolesConfig is the roles example of docs/edge.md: people by group and
// name, a service account by token, devices by ID and by label.
const rolesConfig = `listen: "127.0.0.1:8443"
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
clients:
  - name: ops
    token_sha256: "` + hex64 + `"
    devices: ["*"]
    allow: {pty: true}
tokens:
  - name: ci-deploy
    token_sha256: "` + hex64b + `"
roles:
  - name: field-eng
    match: {groups: [field-eng], names: ["alice@example.com"], tokens: [ci-deploy]}
    devices: {ids: ["gw-*"], labels: {site: "berlin-*"}}
    allow: {pty: true, exec: true, tcp: ["127.0.0.1:*"], files: {read: ["/var/log"]}, recordings: read}
    recording: required
  - name: lab
    match: {groups: [lab]}
    devices: {labels: {tier: test}}
    allow: {tcp: ["*:22"]}
    recording: best_effort
devices:
  labels_file: labels.yaml
`

const hex64b = "1111111111111111111111111111111111111111111111111111111111111111"

const labelsYAML = `# device ID globs to labels
"gw-*": {site: berlin-1}
gw-9: {site: paris}
"lab-*": {tier: test}
`

func writeRolesConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(rolesConfig), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "labels.yaml"), []byte(labelsYAML), 0o600))
	return filepath.Join(dir, "edge.yaml")
}

func TestRolesConfig(t *testing.T) {
	path := writeRolesConfig(t)
	c, err := loadPolicyConfig(path)
	require.NoError(t, err)
	p := c.policy
	alice := edge.Identity{Name: "alice@example.com", Method: edge.MethodOIDC}
	bob := edge.Identity{Name: "bob@example.com", Method: edge.MethodOIDC, Groups: []string{"field-eng"}}
	carol := edge.Identity{Name: "carol@example.com", Method: edge.MethodJWT, Groups: []string{"lab"}}
	ci := edge.Identity{Name: "ci-deploy"}
	dev := func(id string) edge.DeviceRef { return p.LabelDevice(edge.DeviceRef{ID: id}) }

	require.Equal(t, map[string]string{"site": "berlin-1"}, dev("gw-1").Labels)
	require.Equal(t, map[string]string{"site": "paris"}, dev("gw-9").Labels, "a later entry of the labels file wins")
	pty := edge.Request{Type: wire.MsgPTY}
	for _, id := range []edge.Identity{alice, bob, ci} {
		require.NoError(t, p.Authorize(id, dev("gw-1"), pty), "%s", id)
	}
	require.Equal(t, "field-eng", p.GrantingRole(alice, dev("gw-1"), pty))
	require.Equal(t, edge.RecordingRequired, p.RecordingMode(alice, dev("gw-1")))
	require.True(t, p.RecordingsAllowedOn(alice, dev("gw-1")))
	err = p.Authorize(alice, dev("gw-9"), pty)
	require.ErrorIs(t, err, edge.ErrNotAllowed)
	require.EqualError(t, err, "not allowed: no role gives alice@example.com access to device gw-9")
	require.Error(t, p.Authorize(carol, dev("gw-1"), pty), "the lab role covers tier=test only")
	require.NoError(t, p.Authorize(carol, dev("lab-3"), edge.Request{Type: wire.MsgTCP, Target: tgt(t, "10.0.0.5:22")}))
	require.Equal(t, edge.RecordingBestEffort, p.RecordingMode(carol, dev("lab-3")))
	// The old clients: entry reads as before.
	ops, ok := p.AuthenticateHash(mustHash(t))
	require.True(t, ok)
	require.NoError(t, p.Authorize(ops, dev("anything"), pty))
	require.EqualError(t, p.Authorize(ops, dev("d1"), edge.Request{Type: wire.MsgExec}), "not allowed: exec on device d1 for client ops: its allow.exec on the edge does not cover it")
}

func TestRolesConfigErrors(t *testing.T) {
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown token", "tokens: [ci-deploy]", "tokens: [nobody]", `roles.0.match.tokens.0: no token is named "nobody"`},
		{"no devices", `devices: {labels: {tier: test}}`, `devices: {}`, "roles.1.devices: required"},
		{"bad label pattern", `site: "berlin-*"`, `site: "ber lin"`, `roles.0.devices.labels.site: label pattern "ber lin" may hold only`},
		{"bad label key", `site: "berlin-*"`, `"si te": "berlin-*"`, `roles.0.devices.labels: label key "si te"`},
		{"bad recording", "recording: required", "recording: always", `roles.0.recording: "always"`},
		{"bad recordings right", "recordings: read", "recordings: write", "roles.0.allow.recordings"},
		{"role named like a client", "name: lab", "name: ops", `roles.1.name: "ops" is the name of a clients: entry`},
		{"no match", "match: {groups: [lab]}", "match: {}", "roles.1.match: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Contains(t, rolesConfig, tt.from)
			cfg := strings.Replace(rolesConfig, tt.from, tt.to, 1)
			cfg = strings.Replace(cfg, "  labels_file: labels.yaml\n", "  last_seen_max: 0\n", 1)
			_, err := parseConfig("/etc/tether/edge.yaml", []byte(cfg), false)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestParseLabelsFile(t *testing.T) {
	rules, err := parseLabelsFile([]byte(labelsYAML))
	require.NoError(t, err)
	require.Len(t, rules, 3)
	require.Equal(t, edge.LabelRule{Devices: "gw-*", Labels: map[string]string{"site": "berlin-1"}}, rules[0])
	empty, err := parseLabelsFile([]byte("# nothing yet\n"))
	require.NoError(t, err)
	require.Empty(t, empty)
	for _, bad := range []string{"- gw-1", "gw 1: {a: b}", "gw-1: [a]", "gw-1: {a b: c}", "gw-1: {a: b, a: c}", "gw-1: {a: {b: c}}"} {
		_, err := parseLabelsFile([]byte(bad))
		require.Error(t, err, bad)
	}
}

func FuzzParseLabelsFile(f *testing.F) {
	f.Add([]byte(labelsYAML))
	f.Add([]byte("gw-1: {site: berlin}\n"))
	f.Add([]byte("gw-1: {a: b, a: c}"))
	f.Add([]byte("[1, 2]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rules, err := parseLabelsFile(b)
		if err != nil {
			return
		}
		if _, err := edge.NewRolePolicy(edge.RoleConfig{DeviceLabels: rules}); err != nil {
			t.Fatalf("a parsed labels file is refused by the policy: %v", err)
		}
	})
}

// TestPolicyCheck runs the command's entry point as main does.
func TestPolicyCheck(t *testing.T) {
	path := writeRolesConfig(t)
	check := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(append([]string{"policy", "check", "--config", path}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := check("--as", "alice@example.com", "--device", "gw-1", "tcp", "127.0.0.1:8080")
	require.NoError(t, err, out)
	require.Contains(t, out, "device gw-1 has labels site=berlin-1")
	require.Contains(t, out, "yes: alice@example.com (oidc) (by role field-eng) may open tcp 127.0.0.1:8080 on device gw-1")

	out, err = check("--as", "alice@example.com", "--device", "gw-1", "tcp", "10.0.0.5:22")
	require.ErrorIs(t, err, errDenied)
	require.Contains(t, out, "no: not allowed: tcp 10.0.0.5:22 on device gw-1 for client alice@example.com: role field-eng allows tcp only to 127.0.0.1:*")

	out, err = check("--as", "alice@example.com", "--device", "gw-9", "pty")
	require.ErrorIs(t, err, errDenied)
	require.Contains(t, out, "no: no role gives alice@example.com access to device gw-9")

	// Flags after the request, a group, a certificate label.
	out, err = check("--as", "dave@example.com", "--device", "x-1", "pty", "--group", "lab", "--label", "tier=test")
	require.ErrorIs(t, err, errDenied)
	require.Contains(t, out, "no role of dave@example.com on device x-1 allows pty (its roles there: lab)")

	out, err = check("--token-name", "ci-deploy", "--device", "gw-2", "files", "read", "/var/log/syslog")
	require.NoError(t, err, out)
	out, err = check("--token-name", "ci-deploy", "--device", "gw-2", "files", "read", "/etc/shadow")
	require.ErrorIs(t, err, errDenied)
	require.Contains(t, out, "role field-eng allows file downloads only beneath /var/log")

	out, err = check("--as", "bob@example.com", "--group", "field-eng", "--device", "gw-2", "pty")
	require.NoError(t, err, out)
	require.Contains(t, out, "recording: required")
	out, err = check("--as", "carol@example.com", "--group", "lab", "--device", "lab-1", "recordings")
	require.ErrorIs(t, err, errDenied, out)
	require.Contains(t, out, "grants recordings: read")

	// The old clients: form: the denial reads as it always did.
	out, err = check("--token-name", "ops", "--device", "d1", "exec")
	require.ErrorIs(t, err, errDenied)
	require.Contains(t, out, "no: not allowed: exec on device d1 for client ops: its allow.exec on the edge does not cover it\n")

	for _, bad := range [][]string{
		{"--device", "gw-1", "pty"},
		{"--as", "a", "--token-name", "b", "--device", "gw-1", "pty"},
		{"--as", "a", "pty"},
		{"--as", "a", "--device", "gw-1"},
		{"--as", "a", "--device", "gw-1", "tcp"},
		{"--as", "a", "--device", "gw-1", "files", "read", "relative"},
		{"--as", "a", "--device", "gw-1", "--label", "bad label", "pty"},
		{"--as", "a", "--device", "gw-1", "fly"},
	} {
		_, err := check(bad...)
		var ue *usageErr
		require.True(t, errors.As(err, &ue), "%v: got %v; want a usage error", bad, err)
	}
}

func tgt(t *testing.T, s string) target.Target {
	t.Helper()
	tg, err := target.Parse(s)
	require.NoError(t, err)
	return tg
}
