package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWebConfig(t *testing.T) {
	path, pki := writeIssueConfig(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(pki.Dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	web := func(extra string) string {
		return string(base) + "web:\n  enabled: true\n" + extra
	}
	tests := []struct {
		name, yaml string
		keyMode    os.FileMode
		keyLen     int
		want       string // "" means it loads
	}{
		{"loads", web("  public_url: https://edge.example.com\n  session_key_file: web.key\n  idle_timeout: 10m\n"), 0o600, 32, ""},
		{"off", string(base) + "web:\n  enabled: false\n", 0o600, 32, ""},
		{"no public_url", web("  session_key_file: web.key\n"), 0o600, 32, "web.public_url: required"},
		{"plain http", web("  public_url: http://edge.example.com\n  session_key_file: web.key\n"), 0o600, 32, "https://HOST"},
		{"no key file", web("  public_url: https://edge.example.com\n"), 0o600, 32, "web.session_key_file: required"},
		{"key readable by others", web("  public_url: https://edge.example.com\n  session_key_file: web.key\n"), 0o644, 32, "chmod 600"},
		{"short key", web("  public_url: https://edge.example.com\n  session_key_file: web.key\n"), 0o600, 16, "at least 32"},
		{"negative idle", web("  public_url: https://edge.example.com\n  session_key_file: web.key\n  idle_timeout: -1m\n"), 0o600, 32, "web.idle_timeout"},
		{"unknown key", web("  public_url: https://edge.example.com\n  session_key_file: web.key\n  cookie_name: x\n"), 0o600, 32, "cookie_name"},
		{"state_dir", "state_dir: state\n" + web("  public_url: https://edge.example.com\n  session_key_file: web.key\n"), 0o600, 32, ""},
	}
	if err := os.Mkdir(filepath.Join(pki.Dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write("web.key", []byte(strings.Repeat("k", tt.keyLen)), tt.keyMode)
			write("edge.yaml", []byte(tt.yaml), 0o600)
			c, err := loadConfig(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				if strings.Contains(tt.yaml, "enabled: true") && (c.web == nil || len(c.web.Key) != 32 || c.web.PublicURL != "https://edge.example.com") {
					t.Fatalf("web config not loaded: %+v", c.web)
				}
				if strings.Contains(tt.yaml, "enabled: false") && c.web != nil {
					t.Fatalf("web config loaded while off")
				}
				// Without a state_dir, sign-outs live in memory, which the
				// edge warns of.
				warned := strings.Contains(strings.Join(c.warnings, "\n"), "state_dir is not set")
				switch {
				case strings.Contains(tt.yaml, "state_dir"):
					if want := filepath.Join(pki.Dir, "state", "web-signouts"); c.webSignOuts != want || warned {
						t.Fatalf("state_dir: got sign-outs in %q (warned %v), want %q and no warning", c.webSignOuts, warned, want)
					}
					if want := filepath.Join(pki.Dir, "state", "last-seen.jsonl"); c.lastSeenFile != want {
						t.Fatalf("state_dir: got last-seen records in %q, want %q", c.lastSeenFile, want)
					}
				case c.web != nil && !warned:
					t.Fatalf("no warning that sign-outs are kept in memory: %q", c.warnings)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestStateDir(t *testing.T) {
	path, pki := writeIssueConfig(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	load := func(yaml string) (*config, error) {
		t.Helper()
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return loadConfig(path)
	}
	// Last-seen records need no web section, and none without a TTL.
	if err := os.Mkdir(filepath.Join(pki.Dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := load(string(base) + "state_dir: state\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.lastSeenFile != filepath.Join(pki.Dir, "state", "last-seen.jsonl") || c.webSignOuts != "" || len(c.warnings) != 0 {
		t.Fatalf("got last-seen %q, sign-outs %q, warnings %q", c.lastSeenFile, c.webSignOuts, c.warnings)
	}
	c, err = load(string(base) + "state_dir: state\ndevices: {last_seen_ttl: 0s}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.lastSeenFile != "" {
		t.Fatalf("a last-seen file without last-seen records: %q", c.lastSeenFile)
	}
	for _, bad := range []string{"missing", "edge.yaml"} {
		_, err = load(string(base) + "state_dir: " + bad + "\n")
		if err == nil || !strings.Contains(err.Error(), "state_dir") || !strings.Contains(err.Error(), "install -d -m 0700") {
			t.Fatalf("state_dir %s: got %v; want an error that says how to make it", bad, err)
		}
	}
}

// A cluster keeps its sign-outs and last-seen records in JetStream: its
// state_dir holds neither, and the edge does not warn.
func TestStateDirInACluster(t *testing.T) {
	p := writeClusterPKI(t)
	if err := os.WriteFile(filepath.Join(p.Dir, "web.key"), []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	web := "web:\n  enabled: true\n  public_url: https://edge.example.com\n  session_key_file: web.key\n"
	for _, extra := range []string{"", "state_dir: .\n"} {
		c, err := loadConfig(p.writeConfig(t, clusterSection+web+extra))
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		if c.webSignOuts != "" || c.lastSeenFile != "" || strings.Contains(strings.Join(c.warnings, "\n"), "state_dir") {
			t.Fatalf("%q: got sign-outs %q, last-seen %q, warnings %q", extra, c.webSignOuts, c.lastSeenFile, c.warnings)
		}
	}
}
