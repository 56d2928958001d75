package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// TestClusterRecordingFetchedThroughPeer: a shell opened through one edge
// of a cluster is recorded there, once; a client on another edge lists it
// and replays it byte for byte, fetched through the peer session, and
// that edge audits the read with the edge that holds it.
func TestClusterRecordingFetchedThroughPeer(t *testing.T) {
	c := newClusterSys(t, clusterOpts{extra: "recording: {mode: best_effort, dir: recs-{{edge}}}\n"})
	ids := c.addAgents(1)
	where := c.waitListed(ids)
	dev := ids[0]
	holder := c.other(where[dev]) // the client's edge, not the device's
	reader := c.other(where[dev], holder.id)
	t.Logf("device on %s, shell through %s, read through %s", where[dev], holder.id, reader.id)

	script := `printf 'cluster-\303'; sleep 0.3; printf '\251-recorded\n'; exit 2`
	shellOut, errOut, code := c.cli(holder, "", "shell", "-t", dev, "--", script)
	require.Equal(t, 2, code, errOut)
	require.Contains(t, shellOut, "cluster-é-recorded")

	// Recorded once, at the client's edge.
	var files []string
	require.Eventually(t, func() bool {
		files = nil
		for _, e := range c.edges {
			got, _ := filepath.Glob(filepath.Join(c.dir, "recs-"+e.id, "*", "*", "*", dev, "*.cast"))
			for _, f := range got {
				files = append(files, e.id+":"+filepath.Base(f))
			}
		}
		return len(files) == 1 && strings.HasPrefix(files[0], holder.id+":"+holder.id+"-")
	}, 30*time.Second, 50*time.Millisecond, "recordings %v; want one, on %s", files, holder.id)
	id := strings.TrimSuffix(strings.TrimPrefix(files[0], holder.id+":"), ".cast")

	var list []struct {
		ID   string `json:"id"`
		Edge string `json:"edge"`
	}
	require.Eventually(t, func() bool {
		out, _, code := c.cli(reader, "", "recordings", "-o", "json")
		return code == 0 && json.Unmarshal([]byte(out), &list) == nil && len(list) == 1
	}, 30*time.Second, 100*time.Millisecond, "the recording is not listed on %s", reader.id)
	require.Equal(t, id, list[0].ID)
	require.Equal(t, holder.id, list[0].Edge)

	played, errOut, code := c.cli(reader, "", "play", id, "--cat", "--raw")
	require.Equal(t, 0, code, errOut)
	require.True(t, utf8.ValidString(played))
	require.Equal(t, shellOut, played)

	audit, err := os.ReadFile(filepath.Join(c.dir, "audit-"+reader.id+".jsonl"))
	require.NoError(t, err)
	read := false
	for _, line := range strings.Split(string(audit), "\n") {
		var r struct {
			Event, Path, Peer string
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Event == "recording_read" && r.Path == id && r.Peer == holder.id {
			read = true
		}
	}
	require.True(t, read, "no recording_read record naming %s on %s:\n%s", holder.id, reader.id, audit)
}
