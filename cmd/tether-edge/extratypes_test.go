package main

import (
	"strings"
	"testing"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport/wire"
)

// withExtraTypes is the issue's config with ops's allow.extra_types set to
// list (on line 14).
func withExtraTypes(list string) string {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	return strings.Replace(base, "      reload: true\n", "      reload: true\n      extra_types: "+list+"\n", 1)
}

func TestConfigExtraTypes(t *testing.T) {
	c, err := parseConfig("/etc/tether/edge.yaml", []byte(withExtraTypes(`[0x15, 33, "0x80", "0XfF"]`)), false)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := c.policy.AuthenticateHash(mustHash(t))
	if !ok {
		t.Fatal("ops does not authenticate")
	}
	for _, typ := range []wire.MsgType{0x15, 0x21, 0x80, 0xff} {
		if err := c.policy.Authorize(id, edge.DeviceRef{ID: "d-1"}, edge.Request{Type: typ}); err != nil {
			t.Errorf("0x%02x: %v; want it allowed", uint8(typ), err)
		}
	}
	if err := c.policy.Authorize(id, edge.DeviceRef{ID: "d-1"}, edge.Request{Type: 0x16}); err == nil {
		t.Error("0x16, not listed, is allowed")
	}
	plain, err := parseConfig("/etc/tether/edge.yaml", []byte(strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.policy.Authorize(id, edge.DeviceRef{ID: "d-1"}, edge.Request{Type: 0x15}); err == nil {
		t.Error("0x15 is allowed without extra_types: relayed types must be off by default")
	}
}

func mustHash(t *testing.T) [32]byte {
	t.Helper()
	sum, err := edge.ParseTokenSHA256(hex64)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestConfigExtraTypeErrors(t *testing.T) {
	tests := []struct {
		name, list string
		want       []string
	}{
		{"type Tether defines", "[0x15, 0x20]", []string{"edge.yaml:14", "clients.0.allow.extra_types.1", "0x20 is FileTransfer, a type Tether defines", "allow.files"}},
		{"tcp", "[0x10]", []string{"clients.0.allow.extra_types.0", "allow.tcp"}},
		{"control message", "[2]", []string{"clients.0.allow.extra_types.0", "control message"}},
		{"extension range", "[0x7e]", []string{"clients.0.allow.extra_types.0", "extension range 0x70..0x7f"}},
		{"too large", "[256]", []string{"clients.0.allow.extra_types.0", "256 is not a stream type number from 0 to 255"}},
		{"negative", "[-1]", []string{"clients.0.allow.extra_types.0", "from 0 to 255"}},
		{"name", "[exec]", []string{"clients.0.allow.extra_types.0", `"exec" is not a type number`, "names are not accepted"}},
		{"hex string too long", `["0x123"]`, []string{"clients.0.allow.extra_types.0", "not a type number"}},
		{"float", "[1.5]", []string{"clients.0.allow.extra_types.0", "from 0 to 255"}},
		{"nested list", "[[1]]", []string{"clients.0.allow.extra_types.0", "from 0 to 255"}},
		{"twice", "[0x15, 21]", []string{"clients.0.allow.extra_types.1", "0x15 is listed twice"}},
		{"not a list", "0x15", []string{"edge.yaml:14", "clients.0.allow.extra_types: want a list of stream type numbers, such as [0x15]"}},
		{"mapping", "{a: 1}", []string{"edge.yaml:14", "want a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig("/etc/tether/edge.yaml", []byte(withExtraTypes(tt.list)), false)
			if err == nil {
				t.Fatal("parseConfig succeeded; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigEdgeID(t *testing.T) {
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	c, err := parseConfig("/etc/tether/edge.yaml", []byte(base+"edge_id: edge-a\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.file.EdgeID != "edge-a" {
		t.Errorf("edge_id = %q; want edge-a", c.file.EdgeID)
	}
	_, err = parseConfig("/etc/tether/edge.yaml", []byte(base+"edge_id: a/b\n"), false)
	if err == nil || !strings.Contains(err.Error(), "edge.yaml:16: edge_id") || !strings.Contains(err.Error(), "not a valid edge ID") {
		t.Errorf("bad edge_id: got %v", err)
	}
	_, err = parseConfig("/etc/tether/edge.yaml", []byte(base+"edge_id: edge-a\n"+clusterSection), false)
	if err == nil || !strings.Contains(err.Error(), "edge.yaml:16: edge_id: a clustered edge is named by cluster.edge_id") {
		t.Errorf("edge_id with a cluster: got %v", err)
	}
}
