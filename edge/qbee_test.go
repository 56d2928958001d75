package edge_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// hostPort is the host:port of an https:// base URL.
func hostPort(url string) string { return strings.TrimPrefix(url, "https://") }

// qbeeTunnel opens a TCP stream on a hand-driven qbee-v1 client session,
// as qbee-cli does (stream 1, SYN and the opening message in one write),
// and checks that a line goes to the echo server at target and back.
func qbeeTunnel(t *testing.T, p *testbroker.RawPeer, sid uint32, target string) {
	t.Helper()
	p.OpenStream(sid, wire.MsgTCP, []byte(target))
	r := p.Stream(sid)
	ans := r.Message()
	require.Equal(t, wire.MsgOK, ans.Type, "answer %v %q", ans.Type, ans.Payload)
	p.SendData(sid, []byte("hello through the edge\n"))
	require.Equal(t, "hello through the edge\n", string(r.Read(len("hello through the edge\n"))))
}

// echoHandler answers OK and echoes the stream until it ends: a device
// that serves a stream type the edge does not define.
func echoHandler(ctx context.Context, st *transport.Stream, payload []byte) error {
	if err := wire.WriteOK(st, append([]byte("ok:"), payload...)); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			if _, werr := st.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return nil
		}
	}
}

// TestQbeeClientOnDevicePath: a qbee-v1 client dials GET /device/<id> with
// the bare token (or a Bearer one), upgrades and moves bytes through a TCP
// stream; the edge audits it like a client of /client/<id>.
func TestQbeeClientOnDevicePath(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1").Handle(wire.MsgTCP, tcpHandler)
	echo := lineEcho(t)
	addr := hostPort(m.URL())
	for _, auth := range []string{opsToken, "Bearer " + opsToken, "bearer " + opsToken} {
		p, status, body := testbroker.DialQbee(t, addr, m.ClientTLS(), "/device/d-1", auth)
		require.Equal(t, http.StatusSwitchingProtocols, status, "auth %q: %s", auth[:6], body)
		qbeeTunnel(t, p, 1, echo)
		qbeeTunnel(t, p, 3, echo)
	}
	require.Eventually(t, func() bool { return len(eventsOf(m, edge.EventClientOpen)) == 3 }, 20*time.Second, 10*time.Millisecond)
	for _, e := range eventsOf(m, edge.EventClientOpen) {
		require.Equal(t, "ops", e.Client)
		require.Equal(t, "d-1", e.Device)
	}
	opens := eventsOf(m, edge.EventStreamOpen)
	require.Len(t, opens, 6)
	require.Equal(t, echo, opens[0].Target)
}

// TestQbeeClientRefusals: what a qbee-v1 client gets wrong is refused with
// a status and a text that say what happened, and audited without the
// token; a device certificate on /device/<id> is a device.
func TestQbeeClientRefusals(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1")
	pki := m.PKI()
	addr := hostPort(m.URL())
	withCert := pki.DeviceTLS(pki.Device("d-2"))
	tests := []struct {
		name, path, auth string
		tc               *tls.Config
		status           int
		text             string
	}{
		{"wrong token", "/device/d-1", "not-a-token", nil, http.StatusUnauthorized, "unknown token"},
		{"wrong scheme", "/device/d-1", "Basic " + opsToken, nil, http.StatusUnauthorized, `unsupported Authorization scheme "Basic"`},
		{"two tokens", "/device/d-1", "Bearer a b", nil, http.StatusUnauthorized, "one token"},
		{"neither credential", "/device/d-1", "", nil, http.StatusUnauthorized, "no credential"},
		{"device cert and token", "/device/d-2", opsToken, withCert, http.StatusBadRequest, "both a client certificate and an Authorization header"},
		{"device cert for another device", "/device/d-1", "", withCert, http.StatusForbidden, "the path names device d-1 but the certificate is device d-2's"},
		{"bad device ID", "/device/a%2Fb", opsToken, nil, http.StatusBadRequest, "invalid device ID in the path: use /device/{deviceID}"},
		{"device outside the globs", "/device/other", limitedToken, nil, http.StatusForbidden, "client limited may not reach device other"},
		{"offline device", "/device/d-404", opsToken, nil, http.StatusNotFound, "device d-404 is not connected"},
		{"edge prefix on an edge without an ID", "/edge/e9/device/d-1", opsToken, nil, http.StatusNotFound, `unknown edge "e9": this edge has no edge ID`},
		{"bad edge ID", "/edge/a%2Fb/device/d-1", opsToken, nil, http.StatusBadRequest, "invalid edge ID in the path"},
		{"edge prefix without a device", "/edge/e9/client/d-1", opsToken, nil, http.StatusNotFound, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := tt.tc
			if tc == nil {
				tc = m.ClientTLS()
			}
			req := fmt.Sprintf(testbroker.QbeeClientRequest, tt.path, tt.auth)
			if tt.auth == "" {
				req = strings.Replace(req, "Authorization: \r\n", "", 1)
			}
			c, err := tls.Dial("tcp", addr, tc)
			require.NoError(t, err)
			p := testbroker.NewRawPeer(t, c)
			p.Write([]byte(req))
			resp, err := http.ReadResponse(p.Reader, nil)
			require.NoError(t, err)
			body := make([]byte, 4096)
			n, _ := resp.Body.Read(body)
			require.Equal(t, tt.status, resp.StatusCode, "body %q", body[:n])
			require.Contains(t, string(body[:n]), tt.text)
		})
	}
	for _, e := range eventsOf(m, edge.EventClientRejected) {
		require.NotContains(t, e.Reason+e.Client, opsToken, "a token leaked into the audit log")
	}

	// A device certificate without a credential on /device/<its ID> is the
	// device, as on /device.
	c, err := tls.Dial("tcp", addr, withCert)
	require.NoError(t, err)
	p := testbroker.NewRawPeer(t, c)
	p.Upgrade("/device/d-2")
	require.Eventually(t, func() bool { return connected(m, "d-2") }, 20*time.Second, 10*time.Millisecond)
}

// TestExtraStreamTypeRelayed: a type Tether does not define reaches the
// device unchanged when the client's rule lists it, the device's answer
// and bytes come back unchanged, and the stream is audited with the type
// number; a client whose rule does not list it is refused, saying so.
func TestExtraStreamTypeRelayed(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1").Handle(extraType, echoHandler)
	addr := hostPort(m.URL())

	p, status, body := testbroker.DialQbee(t, addr, m.ClientTLS(), "/device/d-1", opsToken)
	require.Equal(t, http.StatusSwitchingProtocols, status, body)
	payload := []byte{0, 1, 2, 0xff, 'q'}
	p.OpenStream(1, extraType, payload)
	r := p.Stream(1)
	ans := r.Message()
	require.Equal(t, wire.MsgOK, ans.Type, "answer %q", ans.Payload)
	require.Equal(t, append([]byte("ok:"), payload...), ans.Payload, "the payload reached the device unchanged, and the answer came back unchanged")
	p.SendData(1, []byte("echo me"))
	require.Equal(t, "echo me", string(r.Read(7)))
	p.Write(testbroker.Frame(2, testbroker.CmdFIN, 1, nil))

	require.Eventually(t, func() bool { return len(eventsOf(m, edge.EventStreamClose)) == 1 }, 20*time.Second, 10*time.Millisecond)
	for _, kind := range []string{edge.EventStreamRequest, edge.EventStreamOpen, edge.EventStreamClose} {
		evs := eventsOf(m, kind)
		require.Len(t, evs, 1, kind)
		require.Equal(t, "type-0x15", evs[0].Type, kind)
		require.Equal(t, "ops", evs[0].Client, kind)
	}
	require.Equal(t, int64(7), eventsOf(m, edge.EventStreamClose)[0].BytesUp)

	// peer's rule lists no extra type.
	p2, status, body := testbroker.DialQbee(t, addr, m.ClientTLS(), "/device/d-1", peerToken)
	require.Equal(t, http.StatusSwitchingProtocols, status, body)
	p2.OpenStream(1, extraType, payload)
	ans = p2.Stream(1).Message()
	require.Equal(t, wire.MsgError, ans.Type)
	require.Equal(t, "not allowed: stream type 0x15 on device d-1 for client peer; this edge relays a type it does not define only when the client's allow.extra_types lists it", string(ans.Payload))
	require.Eventually(t, func() bool {
		for _, e := range eventsOf(m, edge.EventStreamDeny) {
			if e.Client == "peer" && e.Type == "type-0x15" && e.Result == "denied" {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)
}

// TestExtraStreamTypeLimits: relayed streams count against the device's
// and the client's stream caps like every other.
func TestExtraStreamTypeLimits(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	m := newEdge(t, mock.Options{Limits: edge.Limits{MaxStreamsPerDevice: 2, MaxStreamsPerClientPerDevice: 1}})
	m.DeviceClientWithID("d-1").Handle(extraType, func(ctx context.Context, st *transport.Stream, _ []byte) error {
		_ = wire.WriteOK(st, nil)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	c := m.ClientFor("d-1")
	st, _, err := c.OpenStream(ctxT(t), extraType, nil)
	require.NoError(t, err)
	defer st.Close()
	_, _, err = c.OpenStream(ctxT(t), extraType, nil)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "too many streams: client ops already has 1 open to device d-1")
}

// TestQbeeClientEdgePrefixInCluster: on a cluster, /edge/<edge
// ID>/device/<id> naming any live edge of it reaches the device from any
// edge, and relayed types cross the hop; an unknown edge ID is a 404 that
// says so.
func TestQbeeClientEdgePrefixInCluster(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	rig.device("e1", "d-1", map[wire.MsgType]device.Handler{extraType: echoHandler})
	rig.waitEverywhere("d-1", "e1")
	require.Eventually(t, func() bool { return len(rig.edges["e2"].presence.Edges()) == 2 }, 20*time.Second, 10*time.Millisecond)
	echo := lineEcho(t)
	addr := hostPort(rig.edges["e2"].url)
	for _, prefix := range []string{"/edge/e1", "/edge/e2", ""} {
		p, status, body := testbroker.DialQbee(t, addr, rig.pki.ClientTLS(), prefix+"/device/d-1", opsToken)
		require.Equal(t, http.StatusSwitchingProtocols, status, "%s: %s", prefix, body)
		qbeeTunnel(t, p, 1, echo)
		p.OpenStream(3, extraType, []byte("x"))
		r := p.Stream(3)
		ans := r.Message()
		require.Equal(t, wire.MsgOK, ans.Type, "%s: %q", prefix, ans.Payload)
		require.Equal(t, "ok:x", string(ans.Payload))
		p.SendData(3, []byte("across"))
		require.Equal(t, "across", string(r.Read(6)))
	}
	_, status, body := testbroker.DialQbee(t, addr, rig.pki.ClientTLS(), "/edge/e7/device/d-1", opsToken)
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, `unknown edge "e7": no live edge of this cluster has that ID`)
	_, status, _ = testbroker.DialQbee(t, addr, rig.pki.ClientTLS(), "/edge/e1/device/d-1", "wrong")
	require.Equal(t, http.StatusUnauthorized, status)

	require.Eventually(t, func() bool {
		for _, e := range rig.edges["e1"].audit.Events() {
			if e.Kind == edge.EventStreamOpen && e.Type == "type-0x15" && e.Peer == "e2" && e.Result == "ok" {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "the device's edge audits the relayed type")
}
