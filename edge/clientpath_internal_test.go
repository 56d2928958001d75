package edge

import (
	"strings"
	"testing"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport/wire"
)

func TestParseClientPath(t *testing.T) {
	tests := []struct {
		name, path   string
		ok           bool
		device, edge string
		qbee         bool
		errText      string
	}{
		{name: "tether client", path: "/client/d-1", ok: true, device: "d-1"},
		{name: "qbee client", path: "/device/d-1", ok: true, device: "d-1", qbee: true},
		{name: "qbee client under an edge", path: "/edge/e-1/device/d-1", ok: true, device: "d-1", edge: "e-1", qbee: true},
		{name: "escaped device ID", path: "/device/d%2D1", ok: true, device: "d-1", qbee: true},
		{name: "escaped edge ID", path: "/edge/e%3A1/device/d:1", ok: true, device: "d:1", edge: "e:1", qbee: true},
		{name: "slash in device ID", path: "/device/a%2Fb", ok: true, qbee: true, errText: "invalid device ID in the path: use /device/{deviceID}"},
		{name: "path under device ID", path: "/device/a/b", ok: true, qbee: true, errText: "invalid device ID"},
		{name: "empty device ID", path: "/device/", ok: true, qbee: true, errText: "invalid device ID"},
		{name: "bad escape", path: "/client/%zz", ok: true, errText: "use /client/{deviceID}"},
		{name: "empty edge ID", path: "/edge//device/d-1", ok: true, qbee: true, errText: "invalid edge ID"},
		{name: "slash in edge ID", path: "/edge/a%2Fb/device/d-1", ok: true, qbee: true, errText: "invalid edge ID"},
		{name: "edge prefix without device", path: "/edge/e-1/client/d-1", ok: false},
		{name: "other", path: "/devices/d-1", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok, err := parseClientPath(tt.path)
			if ok != tt.ok {
				t.Fatalf("ok = %v; want %v", ok, tt.ok)
			}
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v; want one containing %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v; want none", err)
			}
			if ok && (p.device != tt.device || p.edge != tt.edge || p.qbee != tt.qbee) {
				t.Fatalf("got %+v; want device %q edge %q qbee %v", p, tt.device, tt.edge, tt.qbee)
			}
		})
	}
}

func TestClientToken(t *testing.T) {
	tests := []struct {
		name, header, token, problem string
	}{
		{"bearer", "Bearer abc.def-1", "abc.def-1", ""},
		{"bearer any case", "bEaReR abc", "abc", ""},
		{"bare", "abc.def-1", "abc.def-1", ""},
		{"bare with surrounding space", "  abc  ", "abc", ""},
		{"bearer, several spaces", "Bearer   abc", "abc", ""},
		{"missing", "", "", "missing token"},
		{"bearer without token", "Bearer ", "", "missing token"},
		{"bearer alone", "Bearer", "", "missing token after"},
		{"other scheme", "Basic dXNlcjpwYXNz", "", `unsupported Authorization scheme "Basic"`},
		{"two tokens", "Bearer a b", "", "one token"},
		{"tab in bearer", "Bearer a\tb", "", "one token"},
		{"control character", "a\x01b", "", "control characters"},
		{"non-ASCII", "tökén", "", "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, problem := clientToken(tt.header)
			if tok != tt.token {
				t.Errorf("token = %q; want %q", tok, tt.token)
			}
			if tt.problem == "" && problem != "" || tt.problem != "" && !strings.Contains(problem, tt.problem) {
				t.Errorf("problem = %q; want %q", problem, tt.problem)
			}
		})
	}
}

// FuzzClientPath: whatever the path, parseClientPath never panics, and a
// path it accepts yields IDs that are valid and that name the path's
// own segments.
func FuzzClientPath(f *testing.F) {
	for _, s := range []string{"/client/d-1", "/device/d-1", "/edge/e-1/device/d-1", "/device/a%2Fb",
		"/edge/%zz/device/x", "/edge//device/", "/edge/a/device/b/device/c", "/device/" + strings.Repeat("a", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		p, ok, err := parseClientPath(path)
		if !ok || err != nil {
			return
		}
		if certs.ValidDeviceID(p.device) != nil {
			t.Fatalf("%q: accepted device ID %q is not valid", path, p.device)
		}
		if p.edge != "" && certs.ValidDeviceID(p.edge) != nil {
			t.Fatalf("%q: accepted edge ID %q is not valid", path, p.edge)
		}
		if !strings.HasSuffix(path, p.device) && !strings.Contains(path, "%") {
			t.Fatalf("%q: device ID %q is not the last segment", path, p.device)
		}
		if !p.qbee && p.edge != "" {
			t.Fatalf("%q: a /client/ path named an edge", path)
		}
	})
}

// FuzzClientToken: whatever the header, clientToken never panics, and a
// token it returns is non-empty printable ASCII without spaces.
func FuzzClientToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "abc", "", "Bearer", "Basic x", "Bearer a b", "\x00", "Bearer \x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, problem := clientToken(h)
		if (tok == "") == (problem == "") {
			t.Fatalf("%q: token %q, problem %q: want exactly one", h, tok, problem)
		}
		if tok != "" && !tokenChars(tok) {
			t.Fatalf("%q: token %q has spaces or control characters", h, tok)
		}
	})
}

func TestValidExtraType(t *testing.T) {
	for _, ok := range []wire.MsgType{0x00, 0x04, 0x15, 0x21, 0x6f, 0x80, 0xff} {
		if err := ValidExtraType(ok); err != nil {
			t.Errorf("0x%02x: %v; want nil", uint8(ok), err)
		}
		if !relayable(ok) {
			t.Errorf("0x%02x is not relayable", uint8(ok))
		}
	}
	for typ, want := range map[wire.MsgType]string{
		wire.MsgOK:           "control message",
		wire.MsgGoAway:       "control message",
		wire.MsgTCP:          "allow.tcp",
		wire.MsgPTYCommand:   "allow.pty",
		wire.MsgFileTransfer: "FileTransfer, a type Tether defines: allow it with its own rule (allow.files)",
		wire.MsgPeerOpen:     "PeerOpen, a type Tether defines",
		0x71:                 "its own rule (allow.exec)",
		0x7e:                 "extension range 0x70..0x7f",
		0x7f:                 "extension range 0x70..0x7f",
	} {
		err := ValidExtraType(typ)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("0x%02x: %v; want an error containing %q", uint8(typ), err, want)
		}
		if relayable(typ) {
			t.Errorf("0x%02x is relayable", uint8(typ))
		}
	}
}
