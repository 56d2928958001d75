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
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
