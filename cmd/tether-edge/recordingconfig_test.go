package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/edge"
)

func TestRecordingConfig(t *testing.T) {
	path, pki := writeIssueConfig(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	withClientMode := func(mode string) string {
		return strings.Replace(string(base), "    devices: [\"*\"]", "    devices: [\"*\"]\n    recording: "+mode, 1)
	}
	tests := []struct {
		name, yaml string
		want       string // "" means it loads
		check      func(t *testing.T, c *config)
	}{
		{"absent", string(base), "", func(t *testing.T, c *config) {
			if c.recording != nil {
				t.Fatalf("got %+v; want no recording", c.recording)
			}
		}},
		{"full", string(base) + "recording:\n  mode: required\n  dir: rec\n  input: true\n  max_bytes_per_session: 1048576\n  retention: 720h\n  max_total_bytes: 1073741824\n", "", func(t *testing.T, c *config) {
			want := edge.RecordingConfig{Mode: edge.RecordingRequired, Dir: filepath.Join(pki.Dir, "rec"), Input: true,
				MaxBytesPerSession: 1 << 20, Retention: 720 * time.Hour, MaxTotalBytes: 1 << 30}
			if c.recording == nil || *c.recording != want {
				t.Fatalf("got %+v; want %+v", c.recording, want)
			}
		}},
		{"default dir", string(base) + "recording:\n  mode: best_effort\n", "", func(t *testing.T, c *config) {
			if c.recording.Dir != filepath.Join(pki.Dir, "recordings") {
				t.Fatalf("dir %q; want recordings beside the config", c.recording.Dir)
			}
		}},
		{"absolute dir", string(base) + "recording:\n  mode: best_effort\n  dir: /var/lib/tether/rec\n", "", func(t *testing.T, c *config) {
			if c.recording.Dir != "/var/lib/tether/rec" {
				t.Fatalf("dir %q", c.recording.Dir)
			}
		}},
		{"client mode", withClientMode("required"), "", func(t *testing.T, c *config) {
			if m := c.policy.RecordingMode(edge.Identity{Name: "ops"}, edge.DeviceRef{ID: "d1"}); m != edge.RecordingRequired {
				t.Fatalf("client mode %q; want required", m)
			}
		}},
		{"bad mode", string(base) + "recording:\n  mode: always\n", "recording.mode: \"always\" is not a recording mode: use off, best_effort or required", nil},
		{"bad client mode", withClientMode("yes"), "clients.0.recording: \"yes\" is not a recording mode", nil},
		{"negative size", string(base) + "recording:\n  mode: required\n  max_total_bytes: -1\n", "recording.max_total_bytes: must not be negative", nil},
		{"negative retention", string(base) + "recording:\n  mode: required\n  retention: -1h\n", "recording.retention: must not be negative", nil},
		{"unknown key", string(base) + "recording:\n  mode: required\n  path: x\n", "path", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := loadConfig(path)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v; want an error containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			tt.check(t, c)
		})
	}
}
