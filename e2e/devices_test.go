package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/client"
)

// TestClusterListsOfflineDevices: a device that disconnects from the edge
// that held it is listed offline, with that edge and what the agent said
// at connect, by another edge of the cluster; it is listed online again
// when it comes back.
func TestClusterListsOfflineDevices(t *testing.T) {
	c := newClusterSys(t, clusterOpts{extra: "devices: {last_seen_ttl: 1h}\n"})
	ids := c.addAgents(1)
	holder := c.edge(c.waitListed(ids)[ids[0]])
	other := c.other(holder.id)
	list := func(e *clusterEdge, args ...string) []client.Device {
		t.Helper()
		out, errOut, code := c.cli(e, "", append([]string{"devices", "-o", "json"}, args...)...)
		require.Equal(t, 0, code, errOut)
		var devs []client.Device
		require.NoError(t, json.Unmarshal([]byte(out), &devs), out)
		return devs
	}

	online := list(other, "dev-*")
	require.Len(t, online, 1)
	require.Equal(t, client.StatusOnline, online[0].Status)
	require.Equal(t, holder.id, online[0].Edge)
	require.NotEmpty(t, online[0].Version, "the agent's version travels with the presence record")
	require.NotEmpty(t, online[0].Platform)

	require.NoError(t, c.agents[ids[0]].Stop())
	var off []client.Device
	require.Eventually(t, func() bool {
		off = list(other, "--status", "offline")
		return len(off) == 1
	}, 60*time.Second, 50*time.Millisecond, "%s did not list the device offline", other.id)
	require.Equal(t, ids[0], off[0].ID)
	require.Equal(t, holder.id, off[0].Edge, "the edge it was last seen on")
	require.NotNil(t, off[0].LastSeen)
	require.Equal(t, online[0].AgentInfo, off[0].AgentInfo)
	require.Empty(t, list(other, "--status", "online"))

	// Back: online again, and listed once.
	c.addAgents(1)
	require.Eventually(t, func() bool {
		all := list(other)
		return len(all) == 1 && all[0].Status == client.StatusOnline
	}, 60*time.Second, 50*time.Millisecond, "the device did not come back online on %s", other.id)
}
