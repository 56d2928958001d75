package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/edge"
)

func TestDevicesConfig(t *testing.T) {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	tests := []struct {
		name, yaml string
		ttl        time.Duration
		max        int
		err        string // "" for no error; else what the message must hold
	}{
		{"not set: the defaults", "", edge.DefaultLastSeenTTL, 0, ""},
		{"a TTL", "devices: {last_seen_ttl: 24h}\n", 24 * time.Hour, 0, ""},
		{"0 keeps none", "devices: {last_seen_ttl: 0s}\n", 0, 0, ""},
		{"a cap", "devices:\n  last_seen_max: 5000\n", edge.DefaultLastSeenTTL, 5000, ""},
		{"negative TTL", "devices:\n  last_seen_ttl: -1h\n", 0, 0, "devices.last_seen_ttl: -1h0m0s must not be negative (0 keeps no disconnected devices"},
		{"negative cap", "devices:\n  last_seen_max: -1\n", 0, 0, "devices.last_seen_max: -1 must not be negative"},
		{"unknown key", "devices:\n  ttl: 1h\n", 0, 0, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig("/etc/tether/edge.yaml", []byte(base+tt.yaml), false)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v; want an error holding %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.lastSeenTTL != tt.ttl || c.lastSeenMax != tt.max {
				t.Errorf("got last_seen_ttl %v, last_seen_max %d; want %v, %d", c.lastSeenTTL, c.lastSeenMax, tt.ttl, tt.max)
			}
		})
	}
}
