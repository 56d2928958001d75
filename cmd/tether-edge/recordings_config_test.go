package main

import (
	"strings"
	"testing"

	"github.com/tetherhq/tether/edge"
)

// withRecordings is the issue's config with ops's recordings key set to
// value (on line 29).
func withRecordings(value string) string {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	return strings.Replace(base, "    allow:\n", "    recordings: "+value+"\n    allow:\n", 1)
}

func TestConfigRecordingsRight(t *testing.T) {
	for value, want := range map[string]bool{"read": true, `""`: false} {
		c, err := parseConfig("/etc/tether/edge.yaml", []byte(withRecordings(value)), false)
		if err != nil {
			t.Fatalf("recordings: %s: %v", value, err)
		}
		id, ok := c.policy.AuthenticateHash(mustHash(t))
		if !ok {
			t.Fatal("ops does not authenticate")
		}
		if got := c.policy.RecordingsAllowed(id); got != want {
			t.Errorf("recordings: %s: allowed %v; want %v", value, got, want)
		}
	}
	plain, err := parseConfig("/etc/tether/edge.yaml", []byte(strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)), false)
	if err != nil {
		t.Fatal(err)
	}
	if plain.policy.RecordingsAllowed(edge.Identity{Name: "ops"}) {
		t.Error("a client without the key may read recordings: the right must be off by default")
	}
	_, err = parseConfig("/etc/tether/edge.yaml", []byte(withRecordings("write")), false)
	if err == nil || !strings.Contains(err.Error(), "clients.0.recordings") || !strings.Contains(err.Error(), "recordings: read") {
		t.Fatalf("recordings: write: %v; want an error naming the key and the right", err)
	}
}
