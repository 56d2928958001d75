package edge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/labels"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

const ciToken = "ci-deploy-token-0123456789"

// roleConfig: field-eng (people by group and by name, and the ci-deploy
// token) on gateways in Berlin, with TCP to loopback, shells and log
// downloads; lab (a group) on test devices, TCP to port 22 only.
func roleConfig(t testing.TB) edge.RoleConfig {
	t.Helper()
	return edge.RoleConfig{
		Tokens: []edge.TokenEntry{{Name: "ci-deploy", TokenSHA256: edge.HashToken(ciToken)}},
		Roles: []edge.Role{
			{Name: "field-eng", Match: edge.RoleMatch{Groups: []string{"field-eng"}, Names: []string{"alice@example.com"}, Tokens: []string{"ci-deploy"}},
				Devices: []string{"gw-*"}, Labels: map[string]string{"site": "berlin-*"},
				Allow: edge.Allow{PTY: true, Exec: true, TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")},
					Files: true, FileRules: &edge.FileRules{Read: []string{"/var/log"}}, Recordings: true, Recording: edge.RecordingBestEffort}},
			{Name: "lab", Match: edge.RoleMatch{Groups: []string{"lab"}}, Labels: map[string]string{"tier": "test"},
				Allow: edge.Allow{TCP: []target.Pattern{target.MustParsePattern("*:22")}, Recording: edge.RecordingRequired}},
		},
	}
}

func rolePolicy(t testing.TB) *edge.RolePolicy {
	t.Helper()
	p, err := edge.NewRolePolicy(roleConfig(t))
	require.NoError(t, err)
	return p
}

func tcpReq(t testing.TB, s string) edge.Request {
	t.Helper()
	tg, err := target.Parse(s)
	require.NoError(t, err)
	return edge.Request{Type: wire.MsgTCP, Target: tg}
}

// TestRoles: roles from groups, names and tokens; devices by ID glob and
// label glob; the union of grants; the most specific denial.
func TestRoles(t *testing.T) {
	p := rolePolicy(t)
	alice := edge.Identity{Name: "alice@example.com", Method: edge.MethodOIDC}
	bob := edge.Identity{Name: "bob@example.com", Method: edge.MethodOIDC, Groups: []string{"sales", "field-eng"}}
	carol := edge.Identity{Name: "carol@example.com", Method: edge.MethodJWT, Groups: []string{"lab"}}
	dave := edge.Identity{Name: "dave@example.com", Method: edge.MethodOIDC, Groups: []string{"field-eng", "lab"}}
	ci := edge.Identity{Name: "ci-deploy"}
	berlin := edge.DeviceRef{ID: "gw-1", Labels: map[string]string{"site": "berlin-3"}}
	berlinTest := edge.DeviceRef{ID: "gw-2", Labels: map[string]string{"site": "berlin-1", "tier": "test"}}
	paris := edge.DeviceRef{ID: "gw-9", Labels: map[string]string{"site": "paris"}}
	unlabeled := edge.DeviceRef{ID: "gw-3"}
	pty := edge.Request{Type: wire.MsgPTY}

	tests := []struct {
		name string
		id   edge.Identity
		dev  edge.DeviceRef
		req  edge.Request
		want string // "" allowed, else the exact denial
	}{
		{"by name", alice, berlin, pty, ""},
		{"by group", bob, berlin, pty, ""},
		{"by token", ci, berlin, pty, ""},
		{"label glob", alice, berlinTest, tcpReq(t, "127.0.0.1:80"), ""},
		{"tcp outside the role", alice, berlin, tcpReq(t, "10.0.0.5:22"),
			"not allowed: tcp 10.0.0.5:22 on device gw-1 for client alice@example.com: role field-eng allows tcp only to 127.0.0.1:*"},
		{"label does not match", alice, paris, pty, "not allowed: no role gives alice@example.com access to device gw-9"},
		{"no labels", alice, unlabeled, pty, "not allowed: no role gives alice@example.com access to device gw-3"},
		{"type no role allows", carol, berlinTest, pty,
			"not allowed: pty on device gw-2 for client carol@example.com: no role of carol@example.com on device gw-2 allows pty (its roles there: lab)"},
		{"union of two roles", dave, berlinTest, tcpReq(t, "10.0.0.5:22"), ""},
		{"union: the other role's tcp", dave, berlinTest, tcpReq(t, "127.0.0.1:9"), ""},
		{"both roles named", dave, berlinTest, tcpReq(t, "10.0.0.5:80"),
			"not allowed: tcp 10.0.0.5:80 on device gw-2 for client dave@example.com: roles field-eng, lab allow tcp only to *:22, 127.0.0.1:*"},
		{"files beneath", ci, berlin, edge.Request{Type: wire.MsgFileTransfer, File: &wire.FileRequest{Path: "/var/log/syslog"}}, ""},
		{"files outside", ci, berlin, edge.Request{Type: wire.MsgFileTransfer, File: &wire.FileRequest{Path: "/etc/shadow"}},
			"not allowed: file-transfer download /etc/shadow on device gw-1 for client ci-deploy: role field-eng allows file downloads only beneath /var/log"},
		{"no uploads", ci, berlin, edge.Request{Type: wire.MsgFileTransfer, File: &wire.FileRequest{Direction: 1, Path: "/var/log/x"}},
			"not allowed: file-transfer upload /var/log/x on device gw-1 for client ci-deploy: role field-eng allows no file uploads"},
		// A token named like a person gains nothing of theirs, and the
		// reverse.
		{"token is not a name", edge.Identity{Name: "alice@example.com"}, berlin, pty,
			"not allowed: pty on device gw-1 for client alice@example.com: its allow.pty on the edge does not cover it"},
		{"person is not a token", edge.Identity{Name: "ci-deploy", Method: edge.MethodOIDC}, berlin, pty,
			"not allowed: no role gives ci-deploy access to device gw-1"},
		{"no groups vouched", edge.Identity{Name: "eve@example.com", Method: edge.MethodOIDC}, berlin, pty,
			"not allowed: no role gives eve@example.com access to device gw-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Authorize(tt.id, tt.dev, tt.req)
			if tt.want == "" {
				require.NoError(t, err)
				require.True(t, p.DeviceAllowed(tt.id, tt.dev))
				return
			}
			require.ErrorIs(t, err, edge.ErrNotAllowed)
			require.EqualError(t, err, tt.want)
		})
	}
	require.Equal(t, "field-eng", p.GrantingRole(alice, berlin, pty))
	require.Equal(t, "lab", p.GrantingRole(dave, berlinTest, tcpReq(t, "10.0.0.5:22")))
	require.Equal(t, []string{"field-eng", "lab"}, p.Roles(dave, berlinTest))
	require.Equal(t, "no role gives alice@example.com access to device gw-9", p.DeviceDenial(alice, paris))

	// Recording: the strictest mode of the roles there wins; recordings:
	// read from any of them.
	require.Equal(t, edge.RecordingBestEffort, p.RecordingMode(alice, berlinTest))
	require.Equal(t, edge.RecordingRequired, p.RecordingMode(dave, berlinTest))
	require.Equal(t, edge.RecordingMode(""), p.RecordingMode(alice, paris))
	require.True(t, p.RecordingsAllowedOn(dave, berlinTest))
	require.False(t, p.RecordingsAllowedOn(carol, berlinTest))
	require.True(t, p.RecordingsAllowed(alice), "a role of alice grants recordings: read somewhere")
	require.False(t, p.RecordingsAllowed(carol))
	g, ok := p.Grants(dave, berlinTest)
	require.True(t, ok)
	require.True(t, g.PTY && g.Exec && g.Files && g.Recordings)
	require.Len(t, g.TCP, 2)
}

func TestStricterRecording(t *testing.T) {
	modes := []edge.RecordingMode{"", edge.RecordingOff, edge.RecordingBestEffort, edge.RecordingRequired}
	for i, a := range modes {
		for j, b := range modes {
			want := modes[max(i, j)]
			require.Equal(t, want, edge.StricterRecording(a, b), "%q and %q", a, b)
		}
	}
}

func TestRolePolicyErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*edge.RoleConfig)
		want   string
	}{
		{"unknown token", func(c *edge.RoleConfig) { c.Roles[0].Match.Tokens = []string{"nobody"} }, `no token is named "nobody"`},
		{"no one", func(c *edge.RoleConfig) { c.Roles[1].Match = edge.RoleMatch{} }, "match names no one"},
		{"no devices", func(c *edge.RoleConfig) { c.Roles[1].Labels = nil }, "give ids or labels"},
		{"bad label key", func(c *edge.RoleConfig) { c.Roles[1].Labels = map[string]string{"ti er": "x"} }, "label key"},
		{"bad label glob", func(c *edge.RoleConfig) { c.Roles[1].Labels = map[string]string{"tier": "a b"} }, "label tier"},
		{"bad glob", func(c *edge.RoleConfig) { c.Roles[0].Devices = []string{"gw/1"} }, "device glob"},
		{"role twice", func(c *edge.RoleConfig) { c.Roles[1].Name = "field-eng" }, `role name "field-eng" is used twice`},
		{"token twice", func(c *edge.RoleConfig) { c.Tokens = append(c.Tokens, c.Tokens[0]) }, "used twice"},
		{"bad recording", func(c *edge.RoleConfig) { c.Roles[0].Allow.Recording = "always" }, `recording "always"`},
		{"bad labels file", func(c *edge.RoleConfig) {
			c.DeviceLabels = []edge.LabelRule{{Devices: "gw-*", Labels: map[string]string{"site": "a b"}}}
		}, "device labels 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := roleConfig(t)
			tt.change(&cfg)
			_, err := edge.NewRolePolicy(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestLabelDevice: the labels file adds to the certificate's labels, a
// later rule winning for a key, and a file label over a certificate's.
func TestLabelDevice(t *testing.T) {
	cfg := roleConfig(t)
	cfg.DeviceLabels = []edge.LabelRule{
		{Devices: "gw-*", Labels: map[string]string{"site": "berlin-1", "tier": "prod"}},
		{Devices: "gw-7", Labels: map[string]string{"tier": "test"}},
	}
	p, err := edge.NewRolePolicy(cfg)
	require.NoError(t, err)
	got := p.LabelDevice(edge.DeviceRef{ID: "gw-7", Labels: map[string]string{"rack": "r1", "site": "paris"}})
	require.Equal(t, map[string]string{"rack": "r1", "site": "berlin-1", "tier": "test"}, got.Labels)
	require.Empty(t, p.LabelDevice(edge.DeviceRef{ID: "lab-1"}).Labels)
	carol := edge.Identity{Name: "carol@example.com", Method: edge.MethodOIDC, Groups: []string{"lab"}}
	require.NoError(t, p.Authorize(carol, got, tcpReq(t, "10.0.0.1:22")), "the file's label grants")
	require.Equal(t, got, edge.LabelDevice(p, edge.DeviceRef{ID: "gw-7", Labels: map[string]string{"rack": "r1", "site": "paris"}}))
	require.Equal(t, edge.DeviceRef{ID: "x"}, edge.LabelDevice(edge.AllowAll{}, edge.DeviceRef{ID: "x"}))
}

// labeledDevice connects device id to the edge at baseURL with a
// certificate of pki that carries set, serving TCP tunnels.
func labeledDevice(t testing.TB, baseURL string, pki *certstest.PKI, id string, set labels.Set) *device.Client {
	t.Helper()
	kp := pki.DeviceWith(id, certs.Options{URIs: labels.URIs(set)})
	dc := &device.Client{URL: baseURL + "/device", TLSConfig: pki.DeviceTLS(kp),
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: testLogger(t)}
	dc.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve)
	require.NoError(t, dc.Start(context.Background()))
	t.Cleanup(func() { dc.Close() })
	return dc
}

// TestDeviceLabelsFromCertificate: a device's certificate labels it; a
// role grants by the label; the device list shows and filters by it.
func TestDeviceLabelsFromCertificate(t *testing.T) {
	m := newEdge(t, mock.Options{Policy: rolePolicy(t), Token: ciToken})
	labeledDevice(t, m.URL(), m.PKI(), "gw-1", labels.Set{"site": "berlin-2"})
	labeledDevice(t, m.URL(), m.PKI(), "gw-2", labels.Set{"site": "paris"})
	m.WaitDevice("gw-1")
	m.WaitDevice("gw-2")

	echo := lineEcho(t)
	c := clientWithToken(t, m, "gw-1", ciToken)
	got, err := roundTrip(t, c, echo, "hi")
	require.NoError(t, err)
	require.Equal(t, "hi", got)
	_, _, err = c.OpenStream(ctxT(t), wire.MsgTCP, []byte("10.1.2.3:22"))
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "%v", err)
	require.Equal(t, "not allowed: tcp 10.1.2.3:22 on device gw-1 for client ci-deploy: role field-eng allows tcp only to 127.0.0.1:*", re.Reason)

	// gw-2 is in Paris: the upgrade is refused with the reason.
	code, _ := dialStatus(t, m, "/client/gw-2", "Bearer "+ciToken, m.ClientTLS())
	require.Equal(t, http.StatusForbidden, code)
	_, err = (&client.Dialer{Edge: m.URL(), Token: ciToken, TLSConfig: m.ClientTLS()}).Dial(ctxT(t), "gw-2")
	require.ErrorContains(t, err, "no role gives ci-deploy access to device gw-2")

	// The list shows what the token may see, with its labels.
	d := &client.Dialer{Edge: m.URL(), Token: ciToken, TLSConfig: m.ClientTLS()}
	devs, err := d.Devices(ctxT(t), client.DevicesOptions{})
	require.NoError(t, err)
	require.Len(t, devs, 1)
	require.Equal(t, map[string]string{"site": "berlin-2"}, devs[0].Labels)

	// The audit names the method and the role.
	require.Eventually(t, func() bool {
		for _, e := range m.AuditEvents() {
			if e.Kind == edge.EventStreamOpen && e.Device == "gw-1" && e.Client == "ci-deploy" && e.Auth == "token" && e.Role == "field-eng" {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "no stream_open naming ci-deploy (token) and role field-eng")
}

// TestDeviceListLabelSelector: ?labels= keeps the devices whose labels
// meet the selector; a bad selector is refused with the reason.
func TestDeviceListLabelSelector(t *testing.T) {
	m := newEdge(t, mock.Options{})
	labeledDevice(t, m.URL(), m.PKI(), "gw-1", labels.Set{"site": "berlin", "tier": "prod"})
	labeledDevice(t, m.URL(), m.PKI(), "gw-2", labels.Set{"site": "berlin", "tier": "test"})
	labeledDevice(t, m.URL(), m.PKI(), "gw-3", nil)
	for _, id := range []string{"gw-1", "gw-2", "gw-3"} {
		m.WaitDevice(id)
	}
	d := &client.Dialer{Edge: m.URL(), Token: opsToken, TLSConfig: m.ClientTLS()}
	ids := func(sel string) []string {
		devs, err := d.Devices(ctxT(t), client.DevicesOptions{Labels: sel, Match: "gw-*"})
		require.NoError(t, err)
		out := []string{}
		for _, dv := range devs {
			out = append(out, dv.ID)
		}
		return out
	}
	require.Equal(t, []string{"gw-1", "gw-2", "gw-3"}, ids(""))
	require.Equal(t, []string{"gw-1", "gw-2"}, ids("site=berlin"))
	require.Equal(t, []string{"gw-1"}, ids("site=berlin,tier!=test"))
	require.Equal(t, []string{"gw-3"}, ids("!site"))
	require.Equal(t, []string{"gw-3"}, ids("tier!=prod,tier!=test"))

	_, err := d.Devices(ctxT(t), client.DevicesOptions{Labels: "site=a b"})
	var se *transport.StatusError
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, http.StatusBadRequest, se.StatusCode)
	require.Contains(t, se.Error(), "labels")
}

// TestBadLabelURIRefused: a device certificate whose label URI does not
// parse is refused, with the reason.
func TestBadLabelURIRefused(t *testing.T) {
	m := newEdge(t, mock.Options{})
	bad, err := url.Parse("tether://label/site")
	require.NoError(t, err)
	kp := m.PKI().DeviceWith("gw-bad", certs.Options{URIs: []*url.URL{bad}})
	_, err = transport.Dial(ctxT(t), m.DeviceURL(), "", m.PKI().DeviceTLS(kp), nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "labels")
	require.Eventually(t, func() bool {
		for _, e := range m.AuditEvents() {
			if e.Kind == edge.EventDeviceRejected && e.Device == "gw-bad" && strings.Contains(e.Reason, "not key=value") {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
}

// TestClusterRolesByLabel: a device on edge e2 whose certificate labels it
// is authorized at e1, where the client is, by the labels that presence
// carries, and again at e2; a device whose labels no role covers is
// refused at e1 with the reason.
func TestClusterRolesByLabel(t *testing.T) {
	rig := newClusterRig(t)
	rig.policy = rolePolicy(t)
	rig.start("e1")
	rig.start("e2")
	labeledDevice(t, rig.edges["e2"].url, rig.pki, "gw-1", labels.Set{"site": "berlin-4"})
	labeledDevice(t, rig.edges["e2"].url, rig.pki, "gw-2", labels.Set{"site": "paris"})
	rig.waitEverywhere("gw-1", "e2")
	rig.waitEverywhere("gw-2", "e2")
	rec, ok := rig.edges["e1"].presence.Lookup("gw-1")
	require.True(t, ok)
	require.Equal(t, map[string]string{"site": "berlin-4"}, rec.Labels, "presence carries the certificate's labels")

	d := &client.Dialer{Edge: rig.edges["e1"].url, Token: ciToken, TLSConfig: rig.pki.ClientTLS()}
	c, err := d.Dial(ctxT(t), "gw-1")
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	echo := lineEcho(t)
	got, err := roundTrip(t, c, echo, "across")
	require.NoError(t, err)
	require.Equal(t, "across", got)
	_, _, err = c.OpenStream(ctxT(t), wire.MsgTCP, []byte("10.1.2.3:22"))
	require.ErrorContains(t, err, "role field-eng allows tcp only to 127.0.0.1:*")

	_, err = d.Dial(ctxT(t), "gw-2")
	require.ErrorContains(t, err, "no role gives ci-deploy access to device gw-2")

	// Both edges audit the stream with the method and the role.
	for _, id := range []string{"e1", "e2"} {
		require.Eventually(t, func() bool {
			for _, e := range rig.edges[id].audit.Events() {
				if e.Kind == edge.EventStreamOpen && e.Device == "gw-1" && e.Auth == "token" && e.Role == "field-eng" {
					return true
				}
			}
			return false
		}, 10*time.Second, 10*time.Millisecond, "edge %s has no stream_open with the role", id)
	}
}

// BenchmarkRolePolicyAuthorize: the check every stream open makes, with
// 200 roles of which the identity's groups match a few, by ID and label.
func BenchmarkRolePolicyAuthorize(b *testing.B) {
	var roles []edge.Role
	for i := range 200 {
		roles = append(roles, edge.Role{Name: "r" + itoa(i),
			Match: edge.RoleMatch{Groups: []string{"g" + itoa(i)}}, Devices: []string{"gw-*"},
			Labels: map[string]string{"site": "berlin-*"},
			Allow:  edge.Allow{TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}}})
	}
	p, err := edge.NewRolePolicy(edge.RoleConfig{Roles: roles})
	require.NoError(b, err)
	id := edge.Identity{Name: "alice@example.com", Method: edge.MethodOIDC, Groups: []string{"g3", "g150", "g199", "other"}}
	dev := edge.DeviceRef{ID: "gw-17", Labels: map[string]string{"site": "berlin-2", "tier": "prod"}}
	req := tcpReq(b, "127.0.0.1:22")
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Authorize(id, dev, req); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPolicyRecording(t *testing.T) {
	p := rolePolicy(t)
	dave := edge.Identity{Name: "dave@example.com", Method: edge.MethodOIDC, Groups: []string{"field-eng", "lab"}}
	dev := edge.DeviceRef{ID: "gw-2", Labels: map[string]string{"site": "berlin-1", "tier": "test"}}
	require.Equal(t, edge.RecordingRequired, edge.PolicyRecordingMode(p, dave, dev))
	require.True(t, edge.PolicyRecordingsAllowed(p, dave, dev))
	// A clients: entry's own fields, through StaticPolicy.
	sp, err := edge.NewStaticPolicy([]edge.ClientRule{{Name: "ops", TokenSHA256: edge.HashToken("t"), Devices: []string{"*"},
		Recording: edge.RecordingBestEffort, Recordings: true}})
	require.NoError(t, err)
	ops := edge.Identity{Name: "ops"}
	require.Equal(t, edge.RecordingBestEffort, edge.PolicyRecordingMode(sp, ops, dev))
	require.True(t, edge.PolicyRecordingsAllowed(sp, ops, dev))
	require.False(t, edge.PolicyRecordingsAllowed(sp, edge.Identity{Name: "other"}, dev))
	require.True(t, edge.PolicyRecordingsAllowed(edge.AllowAll{}, ops, dev))
	require.Equal(t, edge.RecordingMode(""), edge.PolicyRecordingMode(edge.AllowAll{}, ops, dev))
}

// TestAdmitAndTokenlessClients: a person is admitted when a role matches
// them; a clients: entry without a token is the rule of the person of its
// name, never of a token.
func TestAdmitAndTokenlessClients(t *testing.T) {
	p := rolePolicy(t)
	require.True(t, p.Admit(edge.Identity{Name: "alice@example.com", Method: edge.MethodOIDC}))
	require.True(t, p.Admit(edge.Identity{Name: "x", Method: edge.MethodJWT, Groups: []string{"lab"}}))
	require.False(t, p.Admit(edge.Identity{Name: "x", Method: edge.MethodJWT, Groups: []string{"sales"}}))
	require.False(t, p.Admit(edge.Identity{Name: "ci-deploy"}), "tokens are admitted by Authenticate")

	sp, err := edge.NewStaticPolicy([]edge.ClientRule{
		{Name: "alice@example.com", Devices: []string{"d-*"}, PTY: true},
		{Name: "bob@example.com", Devices: []string{"*"}, Exec: true},
		{Name: "ops", TokenSHA256: edge.HashToken("t"), Devices: []string{"*"}},
	})
	require.NoError(t, err, "two clients without a token do not share one")
	alice := edge.Identity{Name: "alice@example.com", Method: edge.MethodOIDC}
	require.True(t, sp.Admit(alice))
	require.NoError(t, sp.Authorize(alice, edge.DeviceRef{ID: "d-1"}, edge.Request{Type: wire.MsgPTY}))
	require.EqualError(t, sp.Authorize(alice, edge.DeviceRef{ID: "d-1"}, edge.Request{Type: wire.MsgExec}),
		"not allowed: exec on device d-1 for client alice@example.com: its allow.exec on the edge does not cover it")
	require.Equal(t, "client alice@example.com may not reach device x", sp.DeviceDenial(alice, edge.DeviceRef{ID: "x"}))
	require.False(t, sp.DeviceAllowed(edge.Identity{Name: "alice@example.com"}, edge.DeviceRef{ID: "d-1"}), "a token of that name is not alice")
	_, ok := sp.AuthenticateHash([32]byte{})
	require.False(t, ok, "the all-zero hash is no token")
}

// TestClusterPersonByRole: a person proven by a user certificate, with
// roles only (no clients: entry of theirs), reaches a device of another
// edge by group and label. The forwarded stream carries the method and
// the groups, and the device's edge checks it again with its own labels:
// its labels file moves gw-3 out of Berlin, which the client's edge does
// not know. Both edges audit the person, the method and the role.
func TestClusterPersonByRole(t *testing.T) {
	userCA, err := certs.NewCA("test user CA", certs.Options{})
	require.NoError(t, err)
	const aliceToken = "a-token-named-like-alice-0123456789"
	cfg := edge.RoleConfig{
		Tokens: []edge.TokenEntry{{Name: "ci-deploy", TokenSHA256: edge.HashToken(ciToken)},
			{Name: "alice@example.com", TokenSHA256: edge.HashToken(aliceToken)}},
		Roles: []edge.Role{{Name: "field-eng", Match: edge.RoleMatch{Groups: []string{"field-eng"}, Names: []string{"alice@example.com"}},
			Labels: map[string]string{"site": "berlin-*"},
			Allow:  edge.Allow{PTY: true, TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}}},
			{Name: "deploy", Match: edge.RoleMatch{Tokens: []string{"ci-deploy"}}, Devices: []string{"gw-*"}, Allow: edge.Allow{PTY: true}}}}
	plain, err := edge.NewRolePolicy(cfg)
	require.NoError(t, err)
	cfg.DeviceLabels = []edge.LabelRule{{Devices: "gw-3", Labels: map[string]string{"site": "quarantine"}}}
	relabeled, err := edge.NewRolePolicy(cfg)
	require.NoError(t, err)

	rig := newClusterRig(t)
	rig.server = func(id string, srv *edge.Server) {
		srv.Auth = &edge.AuthConfig{UserCA: certs.PoolOf(userCA.Cert)}
		if id == "e2" {
			srv.Policy = relabeled
		} else {
			srv.Policy = plain
		}
	}
	rig.start("e1")
	rig.start("e2")
	for id, site := range map[string]string{"gw-1": "berlin-4", "gw-2": "paris-1", "gw-3": "berlin-5"} {
		labeledDevice(t, rig.edges["e2"].url, rig.pki, id, labels.Set{"site": site})
		rig.waitEverywhere(id, "e2")
	}

	person := func(name string, groups ...string) *client.Dialer {
		key, err := certs.NewUserKey()
		require.NoError(t, err)
		cert, err := userCA.IssueUser(key.Public(), name, groups, time.Hour)
		require.NoError(t, err)
		tc := rig.pki.ClientTLS()
		tc.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
		return &client.Dialer{Edge: rig.edges["e1"].url, TLSConfig: tc}
	}
	alice := person("alice@example.com", "field-eng")
	c, err := alice.Dial(ctxT(t), "gw-1")
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	got, err := roundTrip(t, c, lineEcho(t), "across")
	require.NoError(t, err, "the device's edge admits alice by the groups the stream carries")
	require.Equal(t, "across", got)
	_, _, err = c.OpenStream(ctxT(t), wire.MsgTCP, []byte("10.1.2.3:22"))
	require.ErrorContains(t, err, "role field-eng allows tcp only to 127.0.0.1:*")

	_, err = alice.Dial(ctxT(t), "gw-2")
	require.ErrorContains(t, err, "no role gives alice@example.com access to device gw-2")

	// e1 sees gw-3 in Berlin and lets the session up; e2, which holds it,
	// labels it otherwise and refuses the stream.
	c3, err := alice.Dial(ctxT(t), "gw-3")
	require.NoError(t, err)
	t.Cleanup(func() { c3.Close() })
	_, err = roundTrip(t, c3, lineEcho(t), "x")
	require.ErrorContains(t, err, "no role gives alice@example.com access to device gw-3")

	// A person without the group, a person named like a role, and a
	// person named like a token are refused on connect; a token named like
	// a person gains nothing of theirs.
	for _, d := range []*client.Dialer{person("bob@example.com", "sales"), person("field-eng"), person("ci-deploy")} {
		_, err = d.Dial(ctxT(t), "gw-1")
		require.ErrorContains(t, err, "has no access on this edge")
	}
	_, err = (&client.Dialer{Edge: rig.edges["e1"].url, Token: aliceToken, TLSConfig: rig.pki.ClientTLS()}).Dial(ctxT(t), "gw-1")
	require.ErrorContains(t, err, "client alice@example.com may not reach device gw-1")
	ci, err := (&client.Dialer{Edge: rig.edges["e1"].url, Token: ciToken, TLSConfig: rig.pki.ClientTLS()}).Dial(ctxT(t), "gw-1")
	require.NoError(t, err, "the token's own role")
	ci.Close()

	for _, id := range []string{"e1", "e2"} {
		require.Eventually(t, func() bool {
			for _, e := range rig.edges[id].audit.Events() {
				if e.Kind == edge.EventStreamOpen && e.Device == "gw-1" && e.Client == "alice@example.com" && e.Auth == "oidc" && e.Role == "field-eng" {
					return true
				}
			}
			return false
		}, 10*time.Second, 10*time.Millisecond, "edge %s has no stream_open of alice (oidc) by field-eng", id)
	}
	denied := false
	for _, e := range rig.edges["e2"].audit.Events() {
		if e.Kind == edge.EventStreamDeny && e.Device == "gw-3" && e.Client == "alice@example.com" && e.Auth == "oidc" {
			denied = true
		}
	}
	require.True(t, denied, "e2 audits its refusal of gw-3 with the person and the method")
}
