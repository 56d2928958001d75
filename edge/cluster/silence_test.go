package cluster

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
)

// edgeEntry is an edges-bucket entry as a watcher delivers it.
type edgeEntry struct {
	jetstream.KeyValueEntry
	rec edge.EdgeRecord
}

func (e edgeEntry) Key() string                     { return KeyFor(e.rec.ID) }
func (e edgeEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }
func (e edgeEntry) Value() []byte                   { b, _ := json.Marshal(e.rec); return b }
func (e edgeEntry) Revision() uint64                { return 1 }
func (e edgeEntry) Created() time.Time              { return time.Now() }
func (e edgeEntry) Bucket() string                  { return EdgesBucket }
func (e edgeEntry) Delta() uint64                   { return 0 }
func (e edgeEntry) String() string                  { return e.rec.ID }
func (e edgeEntry) entry() jetstream.KeyValueEntry  { return e }
func beat(id string) jetstream.KeyValueEntry        { return edgeEntry{rec: edge.EdgeRecord{ID: id}}.entry() }

// TestSilenceIsCountedOnTheViewsClock: how long another edge has been
// silent counts only time in which this edge's view was current. While
// this edge's own heartbeats are not arriving, no edge is judged dead;
// once they arrive again, the others' silence counts from then, so that
// a view that resumes after a stop does not find every edge dead before
// their next heartbeats arrive.
func TestSilenceIsCountedOnTheViewsClock(t *testing.T) {
	p := &Presence{EdgeID: "a", Heartbeat: time.Second, EdgeTTL: 3 * time.Second,
		edgeView: map[string]edgeState{}}
	p.applyEdge(beat("a"))
	p.applyEdge(beat("b"))
	now := time.Now()
	require.True(t, p.aliveLocked("b", now))
	p.edgeView["b"] = edgeState{seen: now.Add(-4 * time.Second)}
	require.False(t, p.aliveLocked("b", now), "an edge silent for its TTL while this view is current is dead")
	require.False(t, p.aliveLocked("c", now), "an edge never heard from is not alive")

	// The view stops for 10 s: this edge's own heartbeats, and the other
	// edge's, were last delivered 10 s ago.
	stopped := now.Add(-10 * time.Second)
	p.ownLast = stopped
	p.edgeView["b"] = edgeState{seen: stopped}
	require.True(t, p.aliveLocked("b", now), "a stale view judged an edge dead")

	// This edge's own heartbeat arrives first: the other edge has a TTL
	// from now in which to be heard.
	p.applyEdge(beat("a"))
	resumed := p.ownLast
	require.True(t, p.aliveLocked("b", resumed.Add(time.Second)), "a resumed view judged an edge dead before hearing from it")
	p.ownLast = resumed.Add(3 * time.Second) // and the heartbeats after it
	require.False(t, p.aliveLocked("b", resumed.Add(4*time.Second)), "an edge silent for a TTL after the view resumed is dead")
}
