package client_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/client"
)

func TestDevicesURL(t *testing.T) {
	tests := []struct {
		name, edge string
		opts       client.DevicesOptions
		want       string
	}{
		{"no options", "https://edge:8443", client.DevicesOptions{}, "https://edge:8443/api/devices"},
		{"base path", "https://edge/tether/", client.DevicesOptions{Status: client.StatusAll}, "https://edge/tether/api/devices?status=all"},
		{"glob escaped", "https://edge", client.DevicesOptions{Match: "gw-[0-9]* &x"}, "https://edge/api/devices?match=gw-%5B0-9%5D%2A+%26x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.DevicesURL(tt.edge, tt.opts)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	_, err := client.DevicesURL("::", client.DevicesOptions{})
	require.ErrorContains(t, err, "parse edge URL")
}

func TestDecodeDevices(t *testing.T) {
	devs, err := client.DecodeDevices([]byte(`[{"id":"d1","connected_since":"2026-12-02T09:00:00Z","streams":1,"future":{"x":1}},
		{"id":"d2","status":"offline","last_seen":"2026-12-02T10:00:00Z","version":"1.4.0"}]`))
	require.NoError(t, err)
	require.Len(t, devs, 2)
	require.Equal(t, client.StatusOnline, devs[0].Status, "an edge without the status field lists online devices only")
	require.NotNil(t, devs[0].ConnectedSince)
	require.Equal(t, client.StatusOffline, devs[1].Status)
	require.Equal(t, "1.4.0", devs[1].Version)

	empty, err := client.DecodeDevices([]byte(`[]`))
	require.NoError(t, err)
	require.Empty(t, empty)
	for _, bad := range []string{`null`, `{"id":"d1"}`, `[{"streams":1}]`, `[{"id":7}]`, `<html>`} {
		_, err := client.DecodeDevices([]byte(bad))
		require.Error(t, err, bad)
	}
}
