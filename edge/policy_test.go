package edge

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

func tgt(t *testing.T, s string) target.Target {
	t.Helper()
	v, err := target.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStaticPolicy(t *testing.T) {
	p, err := NewStaticPolicy([]ClientRule{
		{Name: "ops", TokenSHA256: HashToken("tok-ops"), Devices: []string{"*"},
			TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*"), target.MustParsePattern("*:22")},
			UDP: []target.Pattern{target.MustParsePattern("127.0.0.1:53")}, PTY: true, Reload: true},
		{Name: "lab", TokenSHA256: HashToken("tok-lab"), Devices: []string{"lab-*", "bench"},
			TCP: []target.Pattern{target.MustParsePattern("10.0.0.*:8000-8100")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Authenticate(""); ok {
		t.Error("empty token authenticated")
	}
	if _, ok := p.Authenticate("tok-op"); ok {
		t.Error("a prefix of a token authenticated")
	}
	ops, ok := p.Authenticate("tok-ops")
	if !ok || ops.Name != "ops" {
		t.Fatalf("Authenticate(tok-ops) = %v, %v; want ops", ops, ok)
	}
	lab, _ := p.Authenticate("tok-lab")

	tests := []struct {
		name   string
		id     Identity
		device string
		req    Request
		allow  bool
	}{
		{"ops loopback", ops, "d1", Request{Type: wire.MsgTCP, Target: tgt(t, "127.0.0.1:5432")}, true},
		{"ops ssh anywhere", ops, "d1", Request{Type: wire.MsgTCP, Target: tgt(t, "10.1.2.3:22")}, true},
		{"ops smtp", ops, "d1", Request{Type: wire.MsgTCP, Target: tgt(t, "10.0.0.5:25")}, false},
		{"ops udp dns", ops, "d1", Request{Type: wire.MsgUDP, Target: tgt(t, "127.0.0.1:53")}, true},
		{"ops udp other", ops, "d1", Request{Type: wire.MsgUDP, Target: tgt(t, "127.0.0.1:54")}, false},
		{"ops pty", ops, "d1", Request{Type: wire.MsgPTY}, true},
		{"ops pty command", ops, "d1", Request{Type: wire.MsgPTYCommand}, true},
		{"ops reload", ops, "d1", Request{Type: wire.MsgReload}, true},
		{"ops files not granted", ops, "d1", Request{Type: wire.MsgFileTransfer}, false},
		{"ops unknown type", ops, "d1", Request{Type: 0x7f}, false},
		{"lab in range", lab, "lab-7", Request{Type: wire.MsgTCP, Target: tgt(t, "10.0.0.9:8080")}, true},
		{"lab exact device", lab, "bench", Request{Type: wire.MsgTCP, Target: tgt(t, "10.0.0.9:8080")}, true},
		{"lab other device", lab, "prod-1", Request{Type: wire.MsgTCP, Target: tgt(t, "10.0.0.9:8080")}, false},
		{"lab out of range", lab, "lab-7", Request{Type: wire.MsgTCP, Target: tgt(t, "10.0.0.9:9000")}, false},
		{"lab pty", lab, "lab-7", Request{Type: wire.MsgPTY}, false},
		{"unknown identity", Identity{Name: "ghost"}, "d1", Request{Type: wire.MsgPTY}, false},
	}
	for _, tt := range tests {
		err := p.Authorize(tt.id, DeviceRef{ID: tt.device}, tt.req)
		if (err == nil) != tt.allow {
			t.Errorf("%s: Authorize = %v; want allowed=%v", tt.name, err, tt.allow)
		}
		if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s: error %v does not wrap ErrNotAllowed", tt.name, err)
		}
	}
	err = p.Authorize(ops, DeviceRef{ID: "d1"}, Request{Type: wire.MsgTCP, Target: tgt(t, "10.0.0.5:25")})
	if got, want := err.Error(), "not allowed: tcp 10.0.0.5:25 on device d1 for client ops: its allow.tcp on the edge does not cover it"; got != want {
		t.Errorf("denial = %q; want %q", got, want)
	}
	if (&StaticPolicy{}).DeviceAllowed(ops, DeviceRef{ID: "d1"}) {
		t.Error("the zero StaticPolicy allowed a device")
	}
}

func TestNewStaticPolicyRejects(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rules []ClientRule
		want  string
	}{
		{"no name", []ClientRule{{TokenSHA256: HashToken("a")}}, "no name"},
		{"duplicate name", []ClientRule{{Name: "a", TokenSHA256: HashToken("a")}, {Name: "a", TokenSHA256: HashToken("b")}}, "used twice"},
		{"shared token", []ClientRule{{Name: "a", TokenSHA256: HashToken("a")}, {Name: "b", TokenSHA256: HashToken("a")}}, "same token_sha256"},
		{"bad glob", []ClientRule{{Name: "a", TokenSHA256: HashToken("a"), Devices: []string{"a/b"}}}, "device glob"},
	} {
		_, err := NewStaticPolicy(tt.rules)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v; want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestParseTokenSHA256(t *testing.T) {
	sum := HashToken("x")
	hexSum := "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
	got, err := ParseTokenSHA256(hexSum)
	if err != nil || got != sum {
		t.Fatalf("ParseTokenSHA256 = %x, %v; want %x", got, err, sum)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 64), hexSum + "00"} {
		if _, err := ParseTokenSHA256(bad); err == nil {
			t.Errorf("ParseTokenSHA256(%q) succeeded; want an error", bad)
		}
	}
}

// Device globs match whole IDs: '*' runs over '.' and ':' too, which
// device IDs may contain.
func TestStaticPolicyDeviceGlobs(t *testing.T) {
	for _, tc := range []struct {
		glob, device string
		want         bool
	}{
		{"*", "d1", true},
		{"lab-*", "lab-7", true},
		{"lab-*", "prod-7", false},
		{"site.*", "site.a.rack:3", true},
		{"*:3", "site.a.rack:3", true},
		{"a*b*c", "aXXbYY", false},
		{"exact", "exactly", false},
	} {
		p, err := NewStaticPolicy([]ClientRule{{Name: "c", TokenSHA256: HashToken("t"), Devices: []string{tc.glob}}})
		if err != nil {
			t.Fatalf("glob %q: %v", tc.glob, err)
		}
		if got := p.DeviceAllowed(Identity{Name: "c"}, DeviceRef{ID: tc.device}); got != tc.want {
			t.Errorf("glob %q, device %q: got DeviceAllowed %v; want %v", tc.glob, tc.device, got, tc.want)
		}
	}
}

func TestParseRevocations(t *testing.T) {
	r, err := ParseRevocations(strings.NewReader("# comment\n\n0A:1b\n0x00ff\n  abc  \n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a1b", "ff", "abc"} {
		if !r.Has(s) {
			t.Errorf("serial %s not revoked; list %v", s, r)
		}
	}
	if len(r) != 3 {
		t.Errorf("got %d serials; want 3", len(r))
	}
	if _, err := ParseRevocations(strings.NewReader("0a1\nnot-hex\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("got %v; want an error naming line 2", err)
	}
	if _, err := ParseRevocations(strings.NewReader(strings.Repeat("a", 5000))); err == nil {
		t.Error("an over-long line was accepted")
	}
}

// The upgrade limit counts per source IP, whatever the port.
func TestUpgradeRateIsPerIP(t *testing.T) {
	s := &Server{Limits: Limits{UpgradeRate: 0.001, UpgradeBurst: 3}} // no refill within the test
	s.init()
	defer s.Close()
	for _, tc := range []struct {
		remote string
		want   bool
	}{
		{"1.2.3.4:1000", true},
		{"1.2.3.4:1001", true},
		{"1.2.3.4:1002", true},
		{"1.2.3.4:1003", false}, // the burst is spent, from any port
		{"5.6.7.8:1", true},
		{"[2001:db8::1]:1", true},
	} {
		if got := s.allowFrom(tc.remote); got != tc.want {
			t.Errorf("upgrade from %s: got allowed %v; want %v", tc.remote, got, tc.want)
		}
	}
}

// The stream caps nest: none is above the session's MaxStreams, and a
// client's share of a device is never above the device's cap.
func TestLimitsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         Limits
		maxStreams int
		session    int // MaxStreamsPerClientSession
		device     int // MaxStreamsPerDevice
		share      int // MaxStreamsPerClientPerDevice
	}{
		{"defaults", Limits{}, 128, DefaultMaxStreamsPerClientSession, 128, 64},
		{"device cap above the session's", Limits{MaxStreamsPerDevice: 500}, 128, 64, 128, 64},
		{"client session cap above the session's", Limits{MaxStreamsPerClientSession: 500}, 128, 128, 128, 64},
		{"a small session", Limits{}, 16, 16, 16, 8},
		{"share above the device cap", Limits{MaxStreamsPerDevice: 4, MaxStreamsPerClientPerDevice: 9}, 128, 64, 4, 4},
		{"one stream", Limits{}, 1, 1, 1, 1},
	} {
		l := tc.in.withDefaults(tc.maxStreams)
		got := [3]int{l.MaxStreamsPerClientSession, l.MaxStreamsPerDevice, l.MaxStreamsPerClientPerDevice}
		if want := [3]int{tc.session, tc.device, tc.share}; got != want {
			t.Errorf("%s: got client session, device, share caps %v; want %v", tc.name, got, want)
		}
	}
	if l := (Limits{}).withDefaults(128); l.StallTimeout != DefaultStallTimeout || l.UpgradeBurst != DefaultUpgradeBurst {
		t.Errorf("defaults not applied: %+v", l)
	}
}

// The edge takes its set-up and opening timeouts from Transport, with the
// transport's defaults.
func TestServerTimeoutsComeFromTransport(t *testing.T) {
	for _, tc := range []struct {
		name            string
		tcfg            *transport.Config
		handshake, open time.Duration
	}{
		{"nil", nil, transport.DefaultHandshakeTimeout, transport.DefaultOpenTimeout},
		{"set", &transport.Config{HandshakeTimeout: 3 * time.Second, OpenTimeout: 4 * time.Second}, 3 * time.Second, 4 * time.Second},
	} {
		s := &Server{Transport: tc.tcfg}
		hs := s.HTTPServer(nil)
		if hs.ReadHeaderTimeout != tc.handshake {
			t.Errorf("%s: got ReadHeaderTimeout %v; want %v", tc.name, hs.ReadHeaderTimeout, tc.handshake)
		}
		if s.tcfg.OpenTimeout != tc.open {
			t.Errorf("%s: got open timeout %v; want %v", tc.name, s.tcfg.OpenTimeout, tc.open)
		}
		s.Close()
	}
}

func FuzzParseRevocations(f *testing.F) {
	for _, s := range []string{"", "# c\n0a:1b\n0x00ff\n", "zz\n", strings.Repeat("f", 2000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRevocations(strings.NewReader(s))
		if err != nil {
			return
		}
		for serial := range r {
			if serial == "" || (len(serial) > 1 && serial[0] == '0') || strings.ToLower(serial) != serial {
				t.Fatalf("serial %q is not normalized", serial)
			}
		}
	})
}
