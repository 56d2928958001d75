package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/edge"
)

// Bounds of the last-seen bucket: the size of one record, and how many
// records one listing reads. A record holds up to labels.MaxLabels labels
// of up to 126 bytes each besides the ID, the edge and the agent's
// information: under 10 KiB.
const (
	maxLastSeenValue = 16 << 10
	maxLastSeenList  = 200_000
)

// errNoLastSeen: the presence keeps no last-seen records (LastSeenTTL is
// zero).
var errNoLastSeen = errors.New("cluster: this edge keeps no last-seen records (devices.last_seen_ttl is 0)")

// RecordLastSeen implements edge.LastSeen: one put in the last-seen
// bucket, whose TTL expires it.
func (p *Presence) RecordLastSeen(ctx context.Context, rec edge.LastSeenRecord) error {
	lastSeen := p.lastSeenBucket()
	if lastSeen == nil {
		return errNoLastSeen
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := lastSeen.Put(ctx, KeyFor(rec.ID), b); err != nil {
		p.missing(err)
		return fmt.Errorf("%w: record device %s as last seen: %v", edge.ErrClusterUnavailable, rec.ID, err)
	}
	return nil
}

// ListLastSeen implements edge.LastSeen. It reads the bucket on demand
// (the device list is not a hot path, and the records of a large fleet
// need not sit in every edge's memory): one watcher that replays the
// bucket's contents and stops. Malformed records are skipped; at most
// maxLastSeenList are read.
func (p *Presence) ListLastSeen(ctx context.Context) ([]edge.LastSeenRecord, error) {
	lastSeen := p.lastSeenBucket()
	if lastSeen == nil {
		return nil, errNoLastSeen
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	w, err := lastSeen.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		p.missing(err)
		return nil, fmt.Errorf("%w: list last-seen devices: %v", edge.ErrClusterUnavailable, err)
	}
	defer func() { _ = w.Stop() }()
	var out []edge.LastSeenRecord
	for len(out) < maxLastSeenList {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: list last-seen devices: %v", edge.ErrClusterUnavailable, ctx.Err())
		case ent, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("%w: list last-seen devices: the watcher stopped", edge.ErrClusterUnavailable)
			}
			e = ent
		}
		if e == nil {
			break // the bucket's current contents are in
		}
		id, err := IDFromKey(e.Key())
		if err != nil {
			continue
		}
		var rec edge.LastSeenRecord
		if json.Unmarshal(e.Value(), &rec) != nil || rec.ID != id {
			continue
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// lastSeenBucket returns the last-seen bucket, or nil when the presence
// keeps none (or has not started).
func (p *Presence) lastSeenBucket() jetstream.KeyValue {
	if b := p.bound.Load(); b != nil {
		return b.lastSeen
	}
	return nil
}
