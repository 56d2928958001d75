package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
)

func TestRecordingsURL(t *testing.T) {
	tests := []struct {
		name, edge string
		opts       client.RecordingsOptions
		want       string
	}{
		{"no options", "https://edge:8443", client.RecordingsOptions{}, "https://edge:8443/api/recordings"},
		{"all", "https://edge/tether/", client.RecordingsOptions{Device: "gw-1", Client: "ops", Since: "2026-12-02T10:00:00+01:00", Limit: 5},
			"https://edge/tether/api/recordings?client=ops&device=gw-1&limit=5&since=2026-12-02T10%3A00%3A00%2B01%3A00"},
		{"duration", "https://edge", client.RecordingsOptions{Since: "24h"}, "https://edge/api/recordings?since=24h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.RecordingsURL(tt.edge, tt.opts)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	u, err := client.RecordingURL("https://edge/base", "edge-1-0123456789abcdef")
	require.NoError(t, err)
	require.Equal(t, "https://edge/base/api/recordings/edge-1-0123456789abcdef", u)
	u, err = client.RecordingURL("https://edge", "eu:edge_1.a-0123456789abcdef")
	require.NoError(t, err)
	require.Equal(t, "https://edge/api/recordings/eu:edge_1.a-0123456789abcdef", u)
	for _, bad := range []string{"", "0123456789abcdef", "edge-1-0123456789ABCDEF", "edge-1-0123456789abcde", "../x-0123456789abcdef", "e/1-0123456789abcdef", "e?x-0123456789abcdef"} {
		_, err := client.RecordingURL("https://edge", bad)
		require.ErrorContains(t, err, "is not a recording ID", bad)
	}
}

func TestDecodeRecordings(t *testing.T) {
	list, err := client.DecodeRecordings([]byte(`{"recordings":[{"id":"e1-0123456789abcdef","edge":"e1","device":"gw-1","client":"ops","session":"s1",
		"command":"top","title":"ops@gw-1","start":"2026-12-02T09:00:00Z","duration":12.5,"bytes":2048,"width":120,"height":40,"future":1}],
		"unavailable":["e2"]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"e2"}, list.Unavailable)
	require.Equal(t, client.Recording{ID: "e1-0123456789abcdef", Edge: "e1", Device: "gw-1", Client: "ops", Session: "s1", Command: "top",
		Title: "ops@gw-1", Start: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC), Duration: 12.5, Bytes: 2048, Width: 120, Height: 40}, list.Recordings[0])

	empty, err := client.DecodeRecordings([]byte(`{"recordings":[]}`))
	require.NoError(t, err)
	require.Empty(t, empty.Recordings)
	for _, bad := range []string{`null`, `{}`, `[]`, `{"recordings":[{"device":"d"}]}`, `{"recordings":[{"id":7}]}`, `<html>`} {
		_, err := client.DecodeRecordings([]byte(bad))
		require.Error(t, err, bad)
	}
}

// recordingsEdge is an HTTPS server answering the recordings API with
// handler, and a Dialer that trusts it.
func recordingsEdge(t *testing.T, handler http.HandlerFunc) *client.Dialer {
	t.Helper()
	ts := httptest.NewTLSServer(handler)
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return &client.Dialer{Edge: ts.URL, Token: "tok", TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
}

func TestDialerRecordings(t *testing.T) {
	d := recordingsEdge(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer tok":
			http.Error(w, "unknown token", http.StatusUnauthorized)
		case r.URL.Path == "/api/recordings" && r.URL.Query().Get("device") == "gw-1":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"recordings":[{"id":"e1-0123456789abcdef","device":"gw-1"}],"unavailable":["e2"]}`)
		case r.URL.Path == "/api/recordings":
			http.Error(w, "no recordings right", http.StatusForbidden)
		case r.URL.Path == "/api/recordings/e1-0123456789abcdef":
			w.Header().Set("Content-Type", "application/x-asciicast")
			io.WriteString(w, "{\"version\":2,\"width\":80,\"height\":24}\n")
		default:
			http.Error(w, "no such recording", http.StatusNotFound)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	list, err := d.Recordings(ctx, client.RecordingsOptions{Device: "gw-1"})
	require.NoError(t, err)
	require.Equal(t, "gw-1", list.Recordings[0].Device)
	require.Equal(t, []string{"e2"}, list.Unavailable)

	_, err = d.Recordings(ctx, client.RecordingsOptions{})
	var se *transport.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusForbidden, se.StatusCode)
	require.Equal(t, "no recordings right", se.Reason)

	rc, err := d.Recording(ctx, "e1-0123456789abcdef")
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Equal(t, "{\"version\":2,\"width\":80,\"height\":24}\n", string(b))

	_, err = d.Recording(ctx, "e1-fedcba9876543210")
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusNotFound, se.StatusCode)
	require.Equal(t, "no such recording", se.Reason)

	_, err = d.Recording(ctx, "not an id")
	require.ErrorContains(t, err, "is not a recording ID")

	bad := *d
	bad.Token = "wrong"
	_, err = bad.Recordings(ctx, client.RecordingsOptions{})
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusUnauthorized, se.StatusCode)
}

func TestDialerRecordingsBounded(t *testing.T) {
	d := recordingsEdge(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"recordings":[`)
		chunk := strings.Repeat(`{"id":"e1-0123456789abcdef"},`, 1<<10)
		for range client.MaxRecordingsBody/len(chunk) + 1 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	_, err := d.Recordings(context.Background(), client.RecordingsOptions{})
	require.ErrorContains(t, err, "recording list is larger than 33554432 bytes")
}

func TestDialerRecordingsNotAnEdge(t *testing.T) {
	d := recordingsEdge(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>hello</html>")
	})
	_, err := d.Recordings(context.Background(), client.RecordingsOptions{})
	require.ErrorContains(t, err, "the edge's recording list is not valid")
	require.ErrorContains(t, err, "check that the URL points at a tether edge")
	require.False(t, errors.Is(err, client.ErrRecordingTooLarge))
}
