package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/yamlconf"
	"github.com/tetherhq/tether/transport"
)

const hex64 = "3b9c5e3b56813453e5df1aafe505fa4b01ded53b75797fcd0d1818a421a7e22f"

// issueConfig is the minimal configuration of the issue, as written.
const issueConfig = `listen: "127.0.0.1:8443"
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt            # devices present certs signed by this CA (ClientAuth EKU required)
revoked: revoked.txt         # optional; one serial number (hex) per line; re-read on SIGHUP
clients:
  - name: ops
    token_sha256: "<64 hex chars>"   # SHA-256 of the bearer token; tokens themselves are never stored
    devices: ["*"]                    # globs on device IDs
    allow:
      tcp: ["127.0.0.1:*", "*:22"]    # host:port globs; port ranges like 8000-8100
      udp: ["127.0.0.1:53"]
      pty: true
      reload: true
audit_log: audit.jsonl       # "-" for stdout
metrics_listen: "127.0.0.1:9090"   # optional Prometheus /metrics
`

// writeIssueConfig writes the issue's config and the files it names into
// a fresh PKI directory and returns the config path.
func writeIssueConfig(t *testing.T) (string, *certstest.PKI) {
	t.Helper()
	pki := certstest.New(t)
	cfg := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	path := filepath.Join(pki.Dir, "edge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pki.Dir, "revoked.txt"), []byte("0a1b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pki
}

func TestIssueConfigWorksAsWritten(t *testing.T) {
	path, _ := writeIssueConfig(t)
	// Load from another working directory: paths are relative to the file.
	wd, _ := os.Getwd()
	t.Chdir(os.TempDir())
	defer os.Chdir(wd)
	c, err := loadConfig(path)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	dir := filepath.Dir(path)
	if c.file.TLS.Cert != filepath.Join(dir, "edge.crt") || c.file.DeviceCA != filepath.Join(dir, "ca.crt") ||
		c.file.AuditLog != filepath.Join(dir, "audit.jsonl") {
		t.Errorf("paths not resolved against the config's directory: %+v", c.file)
	}
	if !c.revoked.Has("a1b") {
		t.Errorf("revocation list not loaded: %v", c.revoked)
	}
	if c.file.MetricsListen != "127.0.0.1:9090" || c.file.Listen != "127.0.0.1:8443" {
		t.Errorf("listen addresses: %+v", c.file)
	}
	if c.drain != defaultDrainTimeout {
		t.Errorf("drain = %v; want the default %v", c.drain, defaultDrainTimeout)
	}
}

func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", base + "listne: x\n", []string{"edge.yaml:16:", `unknown key "listne"`}},
		{"unknown nested key", strings.Replace(base, "      pty: true", "      ptty: true", 1), []string{"edge.yaml:12:", `unknown key "ptty"`}},
		{"bad token hash", strings.Replace(base, hex64, "abc", 1), []string{"edge.yaml:7", "clients.0.token_sha256", "64 hex"}},
		{"bad tcp pattern", strings.Replace(base, `"*:22"`, `"*:0x16"`, 1), []string{"edge.yaml:10", "clients.0.allow.tcp.1"}},
		{"bad udp pattern", strings.Replace(base, `"127.0.0.1:53"`, `"127.0.0.1:99999"`, 1), []string{"edge.yaml:11", "clients.0.allow.udp.0"}},
		{"bad device glob", strings.Replace(base, `devices: ["*"]`, `devices: ["a/b"]`, 1), []string{"edge.yaml:8", "clients.0.devices.0"}},
		{"missing listen", strings.Replace(base, `listen: "127.0.0.1:8443"`, ``, 1), []string{"listen", "required"}},
		{"wrong type", strings.Replace(base, "pty: true", "pty: [1]", 1), []string{"edge.yaml:12:", "clients.0.allow.pty", "a list is not true or false"}},
		{"negative limit", base + "limits:\n  open_timeout: -1s\n", []string{"edge.yaml:17", "limits.open_timeout"}},
		{"bad duration", base + "limits:\n  open_timeout: soon\n", []string{"edge.yaml:17:", "limits.open_timeout", "soon"}},
		{"log level", base + "log_level: loud\n", []string{"edge.yaml:16", "log_level"}},
		{"negative keepalive", base + "keepalive:\n  interval: -1s\n", []string{"edge.yaml:17", "keepalive.interval", "negative"}},
		{"keepalive timeout not above the interval", base + "keepalive:\n  interval: 20s\n  timeout: 20s\n", []string{"edge.yaml:18", "keepalive.timeout", "longer than the interval"}},
		{"keepalive timeout below the default interval", base + "keepalive: {timeout: 5s}\n", []string{"edge.yaml:16", "keepalive.timeout", "longer than the interval (" + transport.DefaultKeepAliveInterval.String() + ")"}},
		{"unknown keepalive key", base + "keepalive: {intervall: 1s}\n", []string{"edge.yaml:16", `unknown key "intervall"`}},
		{"negative first stream timeout", base + "limits:\n  first_stream_timeout: -1s\n", []string{"edge.yaml:17", "limits.first_stream_timeout"}},
		{"client share above the device cap", base + "limits:\n  max_streams_per_device: 10\n  max_streams_per_client_per_device: 11\n",
			[]string{"edge.yaml:18", "limits.max_streams_per_client_per_device", "more than the device's cap"}},
		{"empty file", "", []string{"empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig("/etc/tether/edge.yaml", []byte(tt.yaml), false)
			if err == nil {
				t.Fatal("parseConfig succeeded; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "main.") {
				t.Errorf("error %q leaks Go type names", err)
			}
		})
	}
}

// TestConfigErrorExact: the whole text of errors whose line yaml.v3 used
// to get wrong or whose keys it named by Go type.
func TestConfigErrorExact(t *testing.T) {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1) // 15 lines
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key in a section", base + "keepalive:\n  interval: 5s\n  timout: 30s\n",
			`/etc/tether/edge.yaml:18: unknown key "timout" in section keepalive (did you mean "timeout"?); valid keys: interval, timeout`},
		{"unknown key in a list item", strings.Replace(base, "      reload: true", "      relaod: true", 1),
			`/etc/tether/edge.yaml:13: unknown key "relaod" in section clients.0.allow (did you mean "reload"?); valid keys: exec, extra_types, files, pty, reload, tcp, udp`},
		{"bad indentation", base + "limits:\n  open_timeout: 5s\n stall_timeout: 5s\n",
			`/etc/tether/edge.yaml:18: did not find expected key`},
		{"unterminated quote", base + "log_level: \"info\nkeepalive:\n  interval: 5s\n",
			`/etc/tether/edge.yaml:16: found unexpected end of stream`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig("/etc/tether/edge.yaml", []byte(tc.yaml), false)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	_, err := parseConfig("/etc/tether/edge.yaml", []byte(base+"listne: x\n"), false)
	if err == nil || !strings.Contains(err.Error(), `edge.yaml:16: unknown key "listne" (did you mean "listen"?); valid keys: audit_log, `) {
		t.Errorf("got %v; want the top-level keys and a suggestion", err)
	}
}

// TestConfigTokenPastedForItsHash: a token in token_sha256 gets a hint
// that says what to store, and the token is never repeated.
func TestConfigTokenPastedForItsHash(t *testing.T) {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	for _, tc := range []struct{ name, value, want string }{
		{"a token", "tk_live_Zm9vYmFyYmF6cXV4cXV1eA", "this looks like a token, not its sha256"},
		{"a hex token of another length", strings.Repeat("ab", 20), "this looks like a token, not its sha256"},
		{"the whole line", `token_sha256: \"` + hex64 + `\"`, "keep only the 64 hex characters"},
		{"short", "abc", "must be 64 hex characters, got 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig("/etc/tether/edge.yaml", []byte(strings.Replace(base, hex64, tc.value, 1)), false)
			if err == nil {
				t.Fatal("parseConfig succeeded; want an error")
			}
			want := []string{"edge.yaml:7: clients.0.token_sha256: ", tc.want}
			if tc.name != "the whole line" {
				want = append(want, "`tether-edge token hash < TOKEN_FILE`", "keep the token itself secret")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if len(tc.value) > 3 && strings.Contains(err.Error(), tc.value) {
				t.Errorf("error %q repeats the token", err)
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	path, _ := writeIssueConfig(t)
	if err := os.Remove(filepath.Join(filepath.Dir(path), "revoked.txt")); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "revoked") || !strings.Contains(err.Error(), "create an empty file") {
		t.Errorf("missing revocation list: got %v", err)
	}
	_, err = loadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil {
		t.Error("a missing config file loaded")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(strings.Replace(issueConfig, "<64 hex chars>", hex64, 1))
	f.Add("listen: x\nlimits: {open_timeout: 1s}\n")
	f.Add("clients: [{name: a, token_sha256: x, devices: ['*'], allow: {tcp: ['*:0']}}]\n")
	f.Add("{")
	f.Add(strings.Replace(issueConfig, "<64 hex chars>", hex64, 1) + clusterSection)
	f.Add("cluster: {edge_id: e, peer_listen: '[::]:1', nats: {url: 'nats://a:1,tls://b:2'}, replicas: 3}\n")
	f.Add(withExtraTypes(`[0x15, 33, "0x80"]`) + "edge_id: e-1\n")
	f.Add(withExtraTypes(`[0x20, "x", [1], {a: 1}, -1, 1.5]`))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseConfig("/etc/tether/edge.yaml", []byte(s), false)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "/etc/tether/edge.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if c.policy == nil || c.drain <= 0 || c.transport == nil {
			t.Fatalf("accepted config without a policy or drain timeout: %+v", c)
		}
	})
}

func TestConfigLimitsReachTheEdge(t *testing.T) {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	c, err := parseConfig("/x/edge.yaml", []byte(base+`limits:
  max_streams_per_client: 3
  max_streams_per_device: 7
  handshake_timeout: 2s
  open_timeout: 4s
  max_header_bytes: 8192
  upgrade_rate: 5
  upgrade_burst: 9
  stall_timeout: 90s
  drain_timeout: 1m
  max_streams_per_client_per_device: 6
  first_stream_timeout: 45s
  audit_timeout: 3s
  rejected_audit_rate: 2.5
  rejected_audit_burst: 11
keepalive: {interval: 5s, timeout: 25s}
`), false)
	if err != nil {
		t.Fatal(err)
	}
	l := c.limits
	if l.MaxStreamsPerClientSession != 3 || l.MaxStreamsPerDevice != 7 || l.MaxHeaderBytes != 8192 || l.UpgradeRate != 5 || l.UpgradeBurst != 9 ||
		l.StallTimeout != 90*time.Second || c.drain != time.Minute {
		t.Errorf("limits = %+v, drain %v", l, c.drain)
	}
	if l.MaxStreamsPerClientPerDevice != 6 || l.FirstStreamTimeout != 45*time.Second || l.AuditTimeout != 3*time.Second ||
		l.RejectAuditRate != 2.5 || l.RejectAuditBurst != 11 {
		t.Errorf("limits = %+v", l)
	}
	if c.transport == nil || c.transport.KeepAliveInterval != 5*time.Second || c.transport.KeepAliveTimeout != 25*time.Second {
		t.Errorf("keepalive: got transport config %+v; want interval 5s, timeout 25s", c.transport)
	}
	if c.transport == nil || c.transport.HandshakeTimeout != 2*time.Second || c.transport.OpenTimeout != 4*time.Second {
		t.Errorf("limits.handshake_timeout and open_timeout: got transport config %+v; want 2s and 4s", c.transport)
	}
	if _, err := parseConfig("/x/edge.yaml", []byte(base+"limits: {max_streams_per_device: 500}\n"), false); err == nil ||
		!strings.Contains(err.Error(), "limits.max_streams_per_device") {
		t.Errorf("a per-device cap above the session's stream cap: got %v", err)
	}
	if _, err := parseConfig("/x/edge.yaml", []byte(base+"limits: {max_streams_per_client: 500}\n"), false); err == nil ||
		!strings.Contains(err.Error(), "limits.max_streams_per_client") {
		t.Errorf("a per-session cap above the session's stream cap: got %v", err)
	}
}

// TestConfigReferenceIsComplete: every key of edge.yaml (from the config
// struct's yaml tags) has a row in the reference, docs/edge.md, or for the
// cluster section docs/cluster.md, so the reference cannot fall behind
// the code. Sections are covered by their keys. A row names the key in backquotes by its path or a tail of it
// (`tls.cert`, `allow.tcp`, `open_timeout`).
func TestConfigReferenceIsComplete(t *testing.T) {
	rows := func(name string) []string {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "|") {
				out = append(out, l)
			}
		}
		return out
	}
	docs := map[string][]string{"edge.md": rows("edge.md"), "cluster.md": rows("cluster.md")}
	keys := yamlconf.AllKeys(&fileConfig{})
	if len(keys) < 40 {
		t.Fatalf("only %d keys found in fileConfig: %v", len(keys), keys)
	}
	for _, key := range keys {
		if slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, key+".") }) {
			continue // a section: its keys are checked
		}
		var segs []string
		for _, s := range strings.Split(key, ".") {
			if s != "*" {
				segs = append(segs, s)
			}
		}
		doc := "edge.md"
		if segs[0] == "cluster" && len(segs) > 1 {
			doc, segs = "cluster.md", segs[1:]
		}
		found := false
		for i := range segs {
			want := "`" + strings.Join(segs[i:], ".") + "`"
			for _, row := range docs[doc] {
				if strings.Contains(row, want) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("edge.yaml key %s has no row in docs/%s: add one with its unit, default and meaning", key, doc)
		}
	}
}

func TestConfigFilesAllow(t *testing.T) {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	for _, tc := range []struct {
		name, files string
		on          bool
		rules       *edge.FileRules
		err         string
	}{
		{"true", "files: true", true, nil, ""},
		{"false", "files: false", false, nil, ""},
		{"rules", `files: {read: ["/var/log"], write: ["/data/in"]}`, true, &edge.FileRules{Read: []string{"/var/log"}, Write: []string{"/data/in"}}, ""},
		{"read only", `files: {read: ["/var/log"]}`, true, &edge.FileRules{Read: []string{"/var/log"}}, ""},
		{"relative glob", `files: {read: ["var/log"]}`, false, nil, "not an absolute path"},
		{"dot dot glob", `files: {write: ["/data/../etc"]}`, false, nil, "canonical form"},
		{"unknown key", `files: {root: ["/"]}`, false, nil, `no key "root"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(base, "      pty: true", "      pty: true\n      "+tc.files, 1)
			c, err := parseConfig("/etc/tether/edge.yaml", []byte(y), false)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v; want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fa := c.file.Clients[0].Allow.Files
			if fa.on != tc.on || !reflect.DeepEqual(fa.rules, tc.rules) {
				t.Fatalf("files = %v %+v; want %v %+v", fa.on, fa.rules, tc.on, tc.rules)
			}
		})
	}
}
