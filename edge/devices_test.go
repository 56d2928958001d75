package edge_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
)

func ids(devs []client.Device) []string {
	out := []string{}
	for _, d := range devs {
		out = append(out, d.ID)
	}
	return out
}

// TestDeviceListOnlineAndOffline: the list shows what each agent said at
// connect; a device that disconnects is listed offline (status=offline or
// all) with when it was last seen; one that comes back is online again,
// once.
func TestDeviceListOnlineAndOffline(t *testing.T) {
	agent := transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm/v7", OS: "Debian GNU/Linux 12 (bookworm)"}
	m := newEdge(t, mock.Options{LastSeen: &edge.MemoryLastSeen{}, DeviceAgent: agent})
	m.DeviceClientWithID("d-1")
	gone := m.DeviceClientWithID("d-2")
	m.DeviceClientWithID("gw-1")
	ops := &client.Dialer{Edge: m.URL(), Token: opsToken, TLSConfig: m.ClientTLS()}
	list := func(d *client.Dialer, o client.DevicesOptions) []client.Device {
		t.Helper()
		devs, err := d.Devices(ctxT(t), o)
		require.NoError(t, err)
		return devs
	}

	devs := list(ops, client.DevicesOptions{})
	require.Equal(t, []string{"d-1", "d-2", "gw-1"}, ids(devs))
	for _, d := range devs {
		require.Equal(t, client.StatusOnline, d.Status)
		require.Equal(t, agent, d.AgentInfo)
		require.NotNil(t, d.ConnectedSince)
		require.Nil(t, d.LastSeen)
		require.Empty(t, d.Edge, "a single edge has no ID")
	}

	before := time.Now()
	require.NoError(t, gone.Close())
	var off []client.Device
	require.Eventually(t, func() bool {
		off = list(ops, client.DevicesOptions{Status: client.StatusOffline})
		return len(off) > 0
	}, 20*time.Second, 5*time.Millisecond, "d-2 was not listed offline")
	require.Equal(t, []string{"d-1", "gw-1"}, ids(list(ops, client.DevicesOptions{})), "the default is online only, as before")
	require.Equal(t, []string{"d-2"}, ids(off))
	require.Equal(t, client.StatusOffline, off[0].Status)
	require.Nil(t, off[0].ConnectedSince)
	require.NotNil(t, off[0].LastSeen)
	require.False(t, off[0].LastSeen.Before(before.Add(-time.Second)), "last seen %v, disconnected after %v", off[0].LastSeen, before)
	require.Equal(t, agent, off[0].AgentInfo)
	require.Equal(t, "127.0.0.1", strings.Split(off[0].RemoteAddr, ":")[0])
	require.Equal(t, []string{"d-1", "d-2", "gw-1"}, ids(list(ops, client.DevicesOptions{Status: client.StatusAll})))

	// match selects by glob, whatever the status.
	require.Equal(t, []string{"d-1", "d-2"}, ids(list(ops, client.DevicesOptions{Status: client.StatusAll, Match: "d-*"})))
	require.Equal(t, []string{"gw-1"}, ids(list(ops, client.DevicesOptions{Match: "gw-?"})))
	require.Empty(t, list(ops, client.DevicesOptions{Match: "x*"}))

	// The policy applies to offline devices too.
	limited := &client.Dialer{Edge: m.URL(), Token: limitedToken, TLSConfig: m.ClientTLS()}
	require.Equal(t, []string{"d-1", "d-2"}, ids(list(limited, client.DevicesOptions{Status: client.StatusAll})))

	// Back online: listed once, online.
	m.DeviceClientWithID("d-2")
	all := list(ops, client.DevicesOptions{Status: client.StatusAll})
	require.Equal(t, []string{"d-1", "d-2", "gw-1"}, ids(all))
	require.Equal(t, client.StatusOnline, all[1].Status)
	require.Empty(t, list(ops, client.DevicesOptions{Status: client.StatusOffline}))
}

// TestDeviceListWithoutLastSeen: an edge that keeps no last-seen records
// lists no offline devices, and says nothing went wrong.
func TestDeviceListWithoutLastSeen(t *testing.T) {
	m := newEdge(t, mock.Options{})
	gone := m.DeviceClientWithID("d-1")
	require.NoError(t, gone.Close())
	require.Eventually(t, func() bool { return !connected(m, "d-1") }, 20*time.Second, 5*time.Millisecond)
	devs, err := (&client.Dialer{Edge: m.URL(), Token: opsToken, TLSConfig: m.ClientTLS()}).Devices(ctxT(t), client.DevicesOptions{Status: client.StatusAll})
	require.NoError(t, err)
	require.Empty(t, devs)
}

// TestDeviceListBadQuery: a query the edge cannot use is refused with 400
// and a reason that says what to send.
func TestDeviceListBadQuery(t *testing.T) {
	m := newEdge(t, mock.Options{})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: m.ClientTLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	tests := []struct {
		name, query, want string
	}{
		{"bad pattern", "match=" + url.QueryEscape("gw-["), `match pattern "gw-[": syntax error in pattern`},
		{"long pattern", "match=" + strings.Repeat("a", 257), "the most is 256"},
		{"bad status", "status=gone", `status "gone": use online (the default), offline or all`},
		{"twice", "status=all&status=online", "once"},
		{"unknown parameter", "limit=5", `unknown query parameter "limit"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", m.URL()+"/api/devices?"+tt.query, nil)
			req.Header.Set("Authorization", "Bearer "+opsToken)
			resp, err := hc.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
			require.Contains(t, string(body), tt.want)
		})
	}
	// The Go call returns the refusal as a StatusError.
	_, err := (&client.Dialer{Edge: m.URL(), Token: opsToken, TLSConfig: m.ClientTLS()}).Devices(ctxT(t), client.DevicesOptions{Match: "["})
	var se *transport.StatusError
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, http.StatusBadRequest, se.StatusCode)
	// Without a token: 401, before the query is looked at.
	_, err = (&client.Dialer{Edge: m.URL(), TLSConfig: m.ClientTLS()}).Devices(ctxT(t), client.DevicesOptions{Match: "["})
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, http.StatusUnauthorized, se.StatusCode)
}

// TestDeviceListCleansAgentHeaders: what a device sends about itself is
// cut to its bound and kept to printable ASCII; a header sent twice is
// ignored.
func TestDeviceListCleansAgentHeaders(t *testing.T) {
	m := newEdge(t, mock.Options{})
	kp, err := m.PKI().CA.IssueDevice("d-raw", certs.Options{})
	require.NoError(t, err)
	h := http.Header{}
	h.Set(transport.HeaderAgentVersion, strings.Repeat("9", 200))
	h.Set(transport.HeaderAgentOS, "Fedora Linux 41 (Workstation \u00c9dition)")
	h.Add(transport.HeaderAgentPlatform, "linux/amd64")
	h.Add(transport.HeaderAgentPlatform, "linux/arm64")
	sess, err := transport.DialHeader(ctxT(t), m.DeviceURL(), h, certs.DeviceTLSConfig(kp.TLSCertificate(), certs.PoolOf(m.PKI().CA.Cert)), nil)
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	m.WaitDevice("d-raw")
	devs, err := (&client.Dialer{Edge: m.URL(), Token: opsToken, TLSConfig: m.ClientTLS()}).Devices(ctxT(t), client.DevicesOptions{})
	require.NoError(t, err)
	require.Len(t, devs, 1)
	require.Equal(t, transport.AgentInfo{Version: strings.Repeat("9", transport.MaxAgentVersion), OS: "Fedora Linux 41 (Workstation ?dition)"}, devs[0].AgentInfo)
}

// TestPresenceRecordJSONCompat: the agent fields of a presence record are
// left out when empty, so a record without them is written as before, and
// edges of either version read the other's records.
func TestPresenceRecordJSONCompat(t *testing.T) {
	since := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	older := `{"id":"gw-1","edge":"edge-1","nonce":"n1","since":"2026-12-02T09:00:00Z","remote_addr":"198.51.100.7:1"}`
	b, err := json.Marshal(edge.PresenceRecord{ID: "gw-1", Edge: "edge-1", Nonce: "n1", Since: since, RemoteAddr: "198.51.100.7:1"})
	require.NoError(t, err)
	require.JSONEq(t, older, string(b))

	var rec edge.PresenceRecord
	require.NoError(t, json.Unmarshal([]byte(older), &rec))
	require.Equal(t, transport.AgentInfo{}, rec.AgentInfo)

	newer, err := json.Marshal(edge.PresenceRecord{ID: "gw-1", Edge: "edge-1", Nonce: "n1", Since: since,
		AgentInfo: transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm64", OS: "Debian"}})
	require.NoError(t, err)
	require.Contains(t, string(newer), `"version":"1.4.0","platform":"linux/arm64","os":"Debian"`)
	var asOlder struct { // the fields an older edge knows
		ID, Edge, Nonce string
		Since           time.Time
	}
	require.NoError(t, json.Unmarshal(newer, &asOlder))
	require.Equal(t, "n1", asOlder.Nonce)
}
