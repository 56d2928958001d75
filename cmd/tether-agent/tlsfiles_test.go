package main

import (
	"bytes"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device/agent"
)

func TestDeviceTLSWarnsOfExpiry(t *testing.T) {
	pki := certstest.New(t)
	pki.DeviceWith("soon", certs.Options{Lifetime: 48 * time.Hour})
	crt, key := pki.DeviceFiles("soon")
	var logs bytes.Buffer
	cfg := mustConfig(t, pki, crt, key)
	tc, err := deviceTLS(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.NotNil(t, tc.GetClientCertificate)
	require.Contains(t, logs.String(), "the device certificate expires in 47 hours")
}

// TestWarnExpiry: the warning says how long is left, or how long ago the
// certificate expired, never a negative time.
func TestWarnExpiry(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		want     string // "" for no record
	}{
		{"expired hours ago", now.Add(-3*time.Hour - 10*time.Minute), "level=ERROR msg=\"the device certificate expired 3 hours ago, and the edge refuses it;"},
		{"expired days ago", now.Add(-50 * time.Hour), "the device certificate expired 2 days ago"},
		{"expired this second", now, "the device certificate expired 0s ago"},
		{"expires in days", now.Add(10*24*time.Hour + time.Hour), "level=WARN msg=\"the device certificate expires in 10 days;"},
		{"far off", now.Add(60 * 24 * time.Hour), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			warnExpiry(slog.New(slog.NewTextHandler(&logs, nil)), "/etc/tether/device.crt", tc.notAfter, now)
			if tc.want == "" {
				require.Empty(t, logs.String())
				return
			}
			require.Contains(t, logs.String(), tc.want)
			require.Contains(t, logs.String(), "not_after="+tc.notAfter.Format(time.RFC3339))
			msg := regexp.MustCompile(`msg="([^"]*)"`).FindStringSubmatch(logs.String())
			require.NotNil(t, msg, logs.String())
			require.NotContains(t, msg[1], "-", "a negative duration in %q", msg[1])
		})
	}
}

// bump moves the files' modification times forward, as a renewal would.

func mustConfig(t *testing.T, pki *certstest.PKI, crt, key string) *agent.Config {
	t.Helper()
	cfg, err := agent.ParseConfig([]byte("edge: https://127.0.0.1:1/device\ncert: "+crt+"\nkey: "+key+"\nca: "+pki.CAFile+"\n"), "")
	require.NoError(t, err)
	return cfg
}
