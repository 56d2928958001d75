package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/wire"
)

// qbeeConfig: edge "edge-a"; client ops has the edge relay stream type
// 0x15, client plain does not.
const qbeeConfig = `listen: "127.0.0.1:1"
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
edge_id: edge-a
clients:
  - name: ops
    token_sha256: "%s"
    devices: ["*"]
    allow: {tcp: ["127.0.0.1:*"], extra_types: [0x15]}
  - name: plain
    token_sha256: "%s"
    devices: ["*"]
    allow: {tcp: ["127.0.0.1:*"]}
audit_log: audit.jsonl
`

// qbeeExtraType is a stream type Tether does not define.
const qbeeExtraType wire.MsgType = 0x15

// TestQbeeClientAndExtraTypeThroughTheBinary runs the built tether-edge
// between a qbee-v1 client and a qbee-v1 device, both driven by hand with
// exactly what those programs send: the client dials GET /device/<id> and
// GET /edge/<edge ID>/device/<id> with the bare token, and opens stream
// type 0x15, which the device answers OK and echoes. The edge relays it
// for ops, whose rule lists it, audits it with its type number, and
// refuses it, saying why, for plain.
func TestQbeeClientAndExtraTypeThroughTheBinary(t *testing.T) {
	pki := certstest.New(t)
	opsToken, opsSum := testutil.NewToken(t)
	plainToken, plainSum := testutil.NewToken(t)
	path := filepath.Join(pki.Dir, "edge.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, qbeeConfig, opsSum, plainSum), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	p := startEdge(t, "--config", path, "--listen", addr)
	hc := httpsClient(t, filepath.Join(pki.Dir, "ca.crt"))
	waitFor(t, "the edge to be healthy", func() bool { return p.Exited() || testutil.Healthy(hc, "https://"+addr) })
	if p.Exited() {
		t.Fatalf("the edge exited:\n%s", p.Stderr())
	}

	// The device: its certificate, GET /device, then whatever the edge opens.
	dc, err := tls.Dial("tcp", addr, pki.DeviceTLS(pki.Device("d-1")))
	if err != nil {
		t.Fatal(err)
	}
	dev := testbroker.NewRawPeer(t, dc)
	dev.Upgrade("/device")
	waitFor(t, "the device to be listed", func() bool {
		ids, err := listDevices(hc, addr, opsToken)
		return err == nil && len(ids) == 1 && ids[0] == "d-1"
	})

	payload := []byte{0x00, 0x7f, 0xff, 'q', 'b'}
	for i, dial := range []string{"/device/d-1", "/edge/edge-a/device/d-1"} {
		cl, status, body := testbroker.DialQbee(t, addr, pki.ClientTLS(), dial, opsToken)
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("%s: status %d %q; want 101", dial, status, body)
		}
		cl.OpenStream(1, qbeeExtraType, payload)

		sid, ds := dev.AcceptStream()
		m := ds.Message()
		if m.Type != qbeeExtraType || string(m.Payload) != string(payload) {
			t.Fatalf("%s: the device got %v %q; want the client's 0x15 %q unchanged", dial, m.Type, m.Payload, payload)
		}
		dev.SendData(sid, testbroker.Msg(wire.MsgOK, []byte("device-answer")))

		cs := cl.Stream(1)
		if ans := cs.Message(); ans.Type != wire.MsgOK || string(ans.Payload) != "device-answer" {
			t.Fatalf("%s: client got %v %q; want OK with the device's payload", dial, ans.Type, ans.Payload)
		}
		msg := fmt.Sprintf("bytes %d through the edge", i)
		cl.SendData(1, []byte(msg))
		if got := string(ds.Read(len(msg))); got != msg {
			t.Fatalf("%s: the device read %q; want %q", dial, got, msg)
		}
		dev.SendData(sid, []byte(msg))
		if got := string(cs.Read(len(msg))); got != msg {
			t.Fatalf("%s: the client read %q; want %q", dial, got, msg)
		}
	}

	// plain's rule lists no extra type: refused at the edge, never reaching
	// the device.
	cl, status, body := testbroker.DialQbee(t, addr, pki.ClientTLS(), "/edge/edge-a/device/d-1", plainToken)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("plain: status %d %q; want 101", status, body)
	}
	cl.OpenStream(1, qbeeExtraType, payload)
	ans := cl.Stream(1).Message()
	want := "not allowed: stream type 0x15 on device d-1 for client plain; this edge relays a type it does not define only when the client's allow.extra_types lists it"
	if ans.Type != wire.MsgError || string(ans.Payload) != want {
		t.Fatalf("plain: got %v %q; want Error %q", ans.Type, ans.Payload, want)
	}

	// What a qbee-v1 client gets wrong.
	for _, tt := range []struct {
		path, auth string
		status     int
		text       string
	}{
		{"/device/d-1", "wrong-token", http.StatusUnauthorized, "unknown token"},
		{"/edge/edge-b/device/d-1", opsToken, http.StatusNotFound, `unknown edge "edge-b": this edge is edge-a`},
	} {
		_, status, body := testbroker.DialQbee(t, addr, pki.ClientTLS(), tt.path, tt.auth)
		if status != tt.status || !strings.Contains(body, tt.text) {
			t.Errorf("%s: got %d %q; want %d and %q", tt.path, status, body, tt.status, tt.text)
		}
	}

	// The audit log names the type by its number.
	type rec struct {
		Event, Client, Device, Type, Result string
	}
	want2 := map[rec]bool{
		{"stream_request", "ops", "d-1", "type-0x15", "authorized"}: false,
		{"stream_open", "ops", "d-1", "type-0x15", "ok"}:            false,
		{"stream_deny", "plain", "d-1", "type-0x15", "denied"}:      false,
	}
	waitFor(t, "the audit records of the relayed type", func() bool {
		f, err := os.Open(filepath.Join(pki.Dir, "audit.jsonl"))
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r rec
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				if _, ok := want2[r]; ok {
					want2[r] = true
				}
			}
		}
		for _, seen := range want2 {
			if !seen {
				return false
			}
		}
		return true
	})
}
