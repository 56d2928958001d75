package edge_test

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

func TestClientAuthStatuses(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1")
	m.DeviceClientWithID("other")
	tc := m.ClientTLS()

	tests := []struct {
		name, path, auth string
		want             int
	}{
		{"missing token", "/client/d-1", "", http.StatusUnauthorized},
		{"bad token", "/client/d-1", "Bearer nope", http.StatusUnauthorized},
		{"wrong scheme", "/client/d-1", "Basic " + opsToken, http.StatusUnauthorized},
		{"device outside the globs", "/client/other", "Bearer " + limitedToken, http.StatusForbidden},
		{"offline device", "/client/d-404", "Bearer " + opsToken, http.StatusNotFound},
		{"invalid device id", "/client/a%2Fb", "Bearer " + opsToken, http.StatusBadRequest},
		{"allowed", "/client/d-1", "Bearer " + limitedToken, http.StatusSwitchingProtocols},
		{"ops anywhere", "/client/other", "Bearer " + opsToken, http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := dialStatus(t, m, tt.path, tt.auth, tc)
			require.Equal(t, tt.want, got)
		})
	}
	rejected := eventsOf(m, edge.EventClientRejected)
	require.NotEmpty(t, rejected)
	for _, e := range rejected {
		require.NotContains(t, e.Reason+e.Client, opsToken, "a token leaked into the audit log")
	}
}

func TestDeviceListAndHealth(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1")
	m.DeviceClientWithID("other")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: m.ClientTLS()}}
	t.Cleanup(hc.CloseIdleConnections)

	list := func(token string) (int, []string) {
		req, _ := http.NewRequest("GET", m.URL()+"/api/devices", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil
		}
		var out []struct {
			ID             string    `json:"id"`
			ConnectedSince time.Time `json:"connected_since"`
			RemoteAddr     string    `json:"remote_addr"`
			Streams        *int      `json:"streams"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		var ids []string
		for _, d := range out {
			require.False(t, d.ConnectedSince.IsZero())
			require.NotEmpty(t, d.RemoteAddr)
			require.NotNil(t, d.Streams)
			ids = append(ids, d.ID)
		}
		return resp.StatusCode, ids
	}
	code, ids := list(opsToken)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []string{"d-1", "other"}, ids)

	// The streams field counts the streams open to the device.
	release := make(chan struct{})
	defer close(release)
	dev := m.DeviceClientWithID("busy")
	dev.Handle(wire.MsgTCP, blockingHandler(release))
	_, _, err := m.ClientFor("busy").OpenStream(ctxT(t), wire.MsgTCP, []byte("127.0.0.1:1"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, d := range m.Server().Devices() {
			if d.ID == "busy" {
				return d.Streams() == 1
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)
	req, _ := http.NewRequest("GET", m.URL()+"/api/devices", nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	var busy []struct {
		ID      string `json:"id"`
		Streams int    `json:"streams"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&busy))
	resp.Body.Close()
	require.Contains(t, busy, struct {
		ID      string `json:"id"`
		Streams int    `json:"streams"`
	}{"busy", 1})
	code, ids = list(limitedToken)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []string{"d-1"}, ids, "the list must be filtered to the client's device globs")
	code, _ = list("")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = list("wrong")
	require.Equal(t, http.StatusUnauthorized, code)

	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := hc.Get(m.URL() + p)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
	}
	resp, err = hc.Get(m.URL() + "/device")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUpgradeRequired, resp.StatusCode, "a plain GET on /device is not an upgrade")
}

func TestDeviceCertificatesRejected(t *testing.T) {
	m := newEdge(t, mock.Options{})
	pki := m.PKI()
	other := certstest.New(t) // another CA
	expired := pki.DeviceWith("d-expired", certs.Options{NotBefore: time.Now().Add(-48 * time.Hour), Lifetime: time.Hour})
	noEKU, err := pki.CA.IssueClientWithEKU("d-noeku", nil, certs.Options{})
	require.NoError(t, err)
	serverEKU, err := pki.CA.IssueClientWithEKU("d-servereku", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, certs.Options{})
	require.NoError(t, err)
	revoked := pki.Device("d-revoked")
	m.Server().Reload(testPolicy(t), edge.Revocations{certs.SerialHex(revoked.Cert): {}})

	tests := []struct {
		name string
		kp   *certs.KeyPair
		want int
	}{
		{"other CA", other.Device("d-other"), http.StatusForbidden},
		{"expired", expired, http.StatusForbidden},
		{"no EKU", noEKU, http.StatusForbidden},
		{"server EKU only", serverEKU, http.StatusForbidden},
		{"revoked", revoked, http.StatusForbidden},
		{"valid", pki.Device("d-good"), http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The client trusts the edge; only the edge judges the device.
			tc := certs.DeviceTLSConfig(tt.kp.TLSCertificate(), pki.Pool())
			got, _ := dialStatus(t, m, "/device", "", tc)
			require.Equal(t, tt.want, got)
			if got == http.StatusSwitchingProtocols {
				m.WaitDevice(tt.kp.Cert.Subject.CommonName)
			}
		})
	}
	t.Run("no certificate", func(t *testing.T) {
		got, _ := dialStatus(t, m, "/device", "", m.ClientTLS())
		require.Equal(t, http.StatusUnauthorized, got)
	})
	results := map[string]string{}
	for _, e := range eventsOf(m, edge.EventDeviceRejected) {
		results[e.Device] = e.Result
	}
	require.Equal(t, "bad_certificate", results["d-expired"])
	require.Equal(t, "bad_certificate", results["d-noeku"])
	require.Equal(t, "revoked", results["d-revoked"])
	require.False(t, connected(m, "d-revoked"))
}

func TestRevocationByReloadCutsLiveSessionAndNextConnection(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1")
	kp := m.PKI().Device("d-2")
	sess2, err := transport.Dial(ctxT(t), m.DeviceURL(), "", m.PKI().DeviceTLS(kp), nil)
	require.NoError(t, err)
	defer sess2.Close()
	m.WaitDevice("d-2")

	m.Server().Reload(testPolicy(t), edge.Revocations{certs.SerialHex(kp.Cert): {}})
	ended := make(chan error, 1)
	go func() {
		_, err := sess2.Accept() // fails once the edge closed the connection
		ended <- err
	}()
	select {
	case err := <-ended:
		require.Error(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the revoked device's live session was not closed")
	}
	require.Eventually(t, func() bool { return !connected(m, "d-2") }, 20*time.Second, 10*time.Millisecond)
	code, _ := dialStatus(t, m, "/device", "", m.PKI().DeviceTLS(kp))
	require.Equal(t, http.StatusForbidden, code, "the next connection of a revoked device must be refused")
	require.True(t, connected(m, "d-1"), "reload must not drop other devices")

	var reasons []string
	for _, e := range eventsOf(m, edge.EventDeviceDisconnect) {
		if e.Device == "d-2" {
			reasons = append(reasons, e.Reason)
		}
	}
	require.Contains(t, reasons, "certificate revoked")
}

func TestReloadChangesPolicyWithoutDroppingSessions(t *testing.T) {
	m := newEdge(t, mock.Options{})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, tcpHandler)
	echo := testutil.TCPServer(t, testutil.LineEcho)
	c := m.ClientFor("d-1")
	got, err := roundTrip(t, c, echo, "one")
	require.NoError(t, err)
	require.Equal(t, "one", got)

	// A policy that no longer allows loopback TCP for ops.
	p, err := edge.NewStaticPolicy([]edge.ClientRule{{Name: "ops", TokenSHA256: edge.HashToken(opsToken), Devices: []string{"*"}}})
	require.NoError(t, err)
	m.Server().Reload(p, nil)
	_, err = roundTrip(t, c, echo, "two")
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "got %v; want a refusal", err)
	require.Contains(t, re.Reason, "not allowed: tcp "+echo)
	select {
	case <-c.Done():
		t.Fatal("reload closed the client session")
	default:
	}
	require.True(t, connected(m, "d-1"))
}

func TestSessionEndsWhenTheCertificateExpires(t *testing.T) {
	m := newEdge(t, mock.Options{})
	kp := m.PKI().DeviceWith("d-short", certs.Options{NotBefore: time.Now().Add(-time.Minute), Lifetime: time.Minute + 4*time.Second})
	sess, err := transport.Dial(ctxT(t), m.DeviceURL(), "", m.PKI().DeviceTLS(kp), nil)
	require.NoError(t, err)
	defer sess.Close()
	ended := make(chan error, 1)
	go func() { _, err := sess.Accept(); ended <- err }()
	select {
	case err := <-ended:
		require.Error(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the session outlived its certificate")
	}
	require.Eventually(t, func() bool {
		for _, e := range eventsOf(m, edge.EventDeviceDisconnect) {
			if e.Device == "d-short" && e.Reason == "certificate expired" {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)
}

func TestZeroServerDeniesEverything(t *testing.T) {
	var s edge.Server
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
		{"/api/devices", "Bearer x", http.StatusUnauthorized},
		{"/nope", "", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		s.ServeHTTP(rec, req)
		require.Equal(t, tt.want, rec.Code, tt.path)
	}
	require.NoError(t, s.Close())
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "a closed server is not ready")
}
