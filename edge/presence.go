package edge

import (
	"context"
	"errors"
	"time"

	"github.com/tetherhq/tether/transport"
)

// Presence answers, for a cluster of edges, which edge holds each device's
// session, and lists the cluster's live edges. It sits beside Registry:
// the Registry keeps the sessions this edge holds; Presence tells where
// every other device is. Lookups are answered from a local view, without
// a network round trip. A single edge has no Presence.
//
// Implementations must be safe for concurrent use. edge/cluster is the
// one backed by NATS JetStream.
type Presence interface {
	// Announce records that this edge now holds rec's device. It returns
	// the record's revision once it is stored, or an error (the cluster
	// state is unavailable); the edge then keeps the session as a local one.
	Announce(ctx context.Context, rec PresenceRecord) (revision uint64, err error)
	// Reannounce writes rec again, as Announce does, after this edge's
	// record of the session, stored at revision prev, went missing from
	// the view. Unlike Announce it never replaces another record: if one
	// took the place of prev, it fails with ErrRecordReplaced and the
	// store keeps it. The view may lag the store (or judge edges from
	// before a pause of this process), and a newer session of the device
	// on another edge must not be overwritten by an older one.
	Reannounce(ctx context.Context, rec PresenceRecord, prev uint64) (revision uint64, err error)
	// Withdraw removes the device's record if it still names nonce.
	Withdraw(ctx context.Context, id, nonce string) error
	// Lookup returns the live record of device id: one whose edge is alive.
	Lookup(id string) (PresenceRecord, bool)
	// List returns the live records of every device, sorted by ID.
	List() []PresenceRecord
	// Edges returns the live edges, this one included, sorted by ID.
	Edges() []EdgeRecord
	// Health returns nil while the local view is current, and an error
	// that says why it is not (no connection to the cluster, watchers down).
	Health() error
	// Age is how long ago the local view last heard from the store (the
	// echo of this edge's own heartbeat): a few seconds when all is well.
	Age() time.Duration
	// OnRecord registers fn to be called for every record that changes in
	// the view (including this edge's own), so that an edge learns that a
	// device it holds was announced by another edge. fn must not block.
	OnRecord(fn func(PresenceRecord))
}

// PresenceRecord is where one device's session lives.
type PresenceRecord struct {
	// ID is the device ID.
	ID string `json:"id"`
	// Edge is the ID of the edge that holds the session.
	Edge string `json:"edge"`
	// Nonce names the session: every connection of the device gets a new
	// one, so that the newest connection is told from an older one.
	Nonce string `json:"nonce"`
	// Since is when the session was established.
	Since time.Time `json:"since"`
	// Takeover is set when the session replaced a live session of the same
	// ID on another edge; a second takeover soon after is refused, so that
	// two devices that share one certificate cannot push each other off in
	// a loop.
	Takeover bool `json:"takeover,omitempty"`
	// RemoteAddr is the device's address as its edge sees it.
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Serial is the certificate serial in lowercase hex.
	Serial string `json:"serial,omitempty"`
	// AgentInfo is what the device said about itself at connect: its
	// version, platform and OS, each omitted when empty (records of edges
	// that predate them have none).
	transport.AgentInfo
	// Labels are the labels of the device's certificate, so that every
	// edge of the cluster can authorize by them; omitted when there are
	// none (and by edges that predate them).
	Labels map[string]string `json:"labels,omitempty"`
	// Revision orders the records of one device: a later write has a higher
	// one. Set from the store, never stored.
	Revision uint64 `json:"-"`
	// Deleted marks a removal in OnRecord callbacks; never stored.
	Deleted bool `json:"-"`
}

// EdgeRecord is one live edge of the cluster.
type EdgeRecord struct {
	// ID is the edge ID (cluster.edge_id).
	ID string `json:"id"`
	// Advertise is the base URL other edges dial for the peer session.
	Advertise string `json:"advertise"`
	// Started is when the edge started.
	Started time.Time `json:"started"`
	// Seen is when the edge last announced itself.
	Seen time.Time `json:"seen"`
}

// ErrClusterUnavailable: the cluster's state cannot be read or written
// (no connection to NATS, or no quorum). Local devices keep working.
var ErrClusterUnavailable = errors.New("cluster state unavailable")

// ErrRecordReplaced: Reannounce found another record of the device in
// place of this edge's; the store keeps it.
var ErrRecordReplaced = errors.New("the device's record was replaced by another session's")
