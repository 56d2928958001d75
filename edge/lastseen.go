package edge

import (
	"container/list"
	"context"
	"sort"
	"sync"
	"time"

	"github.com/tetherhq/tether/transport"
)

// LastSeenRecord is a device that disconnected: when its edge last saw it,
// and what it was then.
type LastSeenRecord struct {
	// ID is the device ID.
	ID string `json:"id"`
	// Edge is the ID of the edge it was connected to; empty on a single
	// edge.
	Edge string `json:"edge,omitempty"`
	// LastSeen is when its session ended.
	LastSeen time.Time `json:"last_seen"`
	// Since is when that session began.
	Since time.Time `json:"since"`
	// RemoteAddr is the device's address then.
	RemoteAddr string `json:"remote_addr,omitempty"`
	// AgentInfo is what the device said about itself then.
	transport.AgentInfo
	// Labels are the labels of its certificate.
	Labels map[string]string `json:"labels,omitempty"`
}

// LastSeen keeps the devices that disconnected, for a while, so that the
// device list shows them as offline with when they were last seen. A
// device that connects again is listed as online, whatever is kept here.
//
// Implementations must be safe for concurrent use. MemoryLastSeen is the
// one of a single edge; edge/cluster keeps the records of a cluster.
type LastSeen interface {
	// RecordLastSeen keeps rec, replacing any record of the same ID.
	RecordLastSeen(ctx context.Context, rec LastSeenRecord) error
	// ListLastSeen returns the records kept, sorted by ID.
	ListLastSeen(ctx context.Context) ([]LastSeenRecord, error)
}

// Defaults of a MemoryLastSeen.
const (
	// DefaultLastSeenTTL is how long a disconnected device is kept.
	DefaultLastSeenTTL = 7 * 24 * time.Hour
	// DefaultLastSeenMax is how many disconnected devices are kept at
	// most; beyond it, the one that disconnected first goes.
	DefaultLastSeenMax = 100_000
)

// MemoryLastSeen is the LastSeen of a single edge: records live in memory
// for TTL, at most Max of them (the oldest go first). Expired records are
// dropped as the store is used, so it needs no timer and no Close. The
// zero value is ready to use with the defaults.
type MemoryLastSeen struct {
	// TTL is how long a record is kept; zero means DefaultLastSeenTTL.
	TTL time.Duration
	// Max is how many records are kept at most; zero means
	// DefaultLastSeenMax.
	Max int

	mu sync.Mutex
	// mu guards the following.
	order *list.List               // of LastSeenRecord, oldest first
	byID  map[string]*list.Element // into order
	now   func() time.Time         // time.Now; tests replace it
}

var _ LastSeen = (*MemoryLastSeen)(nil)

func (m *MemoryLastSeen) initLocked() {
	if m.order == nil {
		m.order = list.New()
		m.byID = make(map[string]*list.Element)
	}
	if m.now == nil {
		m.now = time.Now
	}
}

func (m *MemoryLastSeen) ttl() time.Duration {
	if m.TTL > 0 {
		return m.TTL
	}
	return DefaultLastSeenTTL
}

func (m *MemoryLastSeen) max() int {
	if m.Max > 0 {
		return m.Max
	}
	return DefaultLastSeenMax
}

// expireLocked drops the records older than the TTL, and the oldest
// beyond Max.
func (m *MemoryLastSeen) expireLocked() {
	cutoff := m.now().Add(-m.ttl())
	for e := m.order.Front(); e != nil; e = m.order.Front() {
		rec := e.Value.(LastSeenRecord)
		if m.order.Len() <= m.max() && rec.LastSeen.After(cutoff) {
			return
		}
		m.order.Remove(e)
		delete(m.byID, rec.ID)
	}
}

// RecordLastSeen implements LastSeen. Records expire in the order they
// arrive (the edge records them as devices disconnect); one older than
// the TTL is not kept.
func (m *MemoryLastSeen) RecordLastSeen(_ context.Context, rec LastSeenRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	if e, ok := m.byID[rec.ID]; ok {
		m.order.Remove(e)
		delete(m.byID, rec.ID)
	}
	if !rec.LastSeen.After(m.now().Add(-m.ttl())) {
		return nil // expired already
	}
	m.byID[rec.ID] = m.order.PushBack(rec)
	m.expireLocked()
	return nil
}

// ListLastSeen implements LastSeen.
func (m *MemoryLastSeen) ListLastSeen(context.Context) ([]LastSeenRecord, error) {
	m.mu.Lock()
	m.initLocked()
	m.expireLocked()
	out := make([]LastSeenRecord, 0, m.order.Len())
	for e := m.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(LastSeenRecord))
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// expectsDevicesBack reports whether the devices of this edge, when it
// stops, are expected back at it rather than at another edge, and it
// keeps what it records across the restart: a single edge with a durable
// LastSeen (FileLastSeen). It then records the devices it drops as it
// stops, and those that do not come back are listed offline.
func (s *Server) expectsDevicesBack() bool {
	_, durable := s.LastSeen.(interface{ durable() })
	return durable && s.Cluster == nil
}

// lastSeenTimeout bounds the writing of one last-seen record.
const lastSeenTimeout = 3 * time.Second

// recordLastSeen keeps d, which just disconnected, in the LastSeen store.
// A device that leaves because this edge drains or closes is not
// recorded (it is expected at another edge, or this one, restarted),
// unless the store outlives this edge (expectsDevicesBack).
func (s *Server) recordLastSeen(d *Device) {
	ls := s.LastSeen
	if ls == nil || s.isDraining() && !s.expectsDevicesBack() {
		return
	}
	if s.Cluster != nil && s.Cluster.Presence.Health() != nil {
		return // the write would wait out its timeout
	}
	rec := LastSeenRecord{ID: d.ID, LastSeen: time.Now().UTC(), Since: d.Since.UTC(),
		RemoteAddr: addrString(d.RemoteAddr), AgentInfo: d.Agent, Labels: d.Labels}
	if s.Cluster != nil {
		rec.Edge = s.Cluster.EdgeID
	}
	ctx, cancel := context.WithTimeout(s.ctx, lastSeenTimeout)
	defer cancel()
	if err := ls.RecordLastSeen(ctx, rec); err != nil {
		s.log.Debug("cannot record when a device was last seen; the device list will not show it as offline", "device", d.ID, "err", err)
	}
}
