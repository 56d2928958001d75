package cluster

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/edge"
)

// WebTicketsBucket keeps the nonces of the web terminal's tickets that
// were used, so that each ticket opens one terminal on all the edges of
// the cluster. Its TTL is twice a ticket's lifetime: a record outlives
// the ticket it uses up.
const WebTicketsBucket = "tether_web_tickets"

// WebTickets is the edge.WebTickets of a cluster, in the
// WebTicketsBucket: the first edge to create a ticket's key uses it. Like
// WebRevocations, it binds the bucket on first use and again after a
// failure; until the bucket is reachable, tickets are refused.
type WebTickets struct {
	// JetStream is the JetStream context of a NATS connection. Required.
	JetStream jetstream.JetStream
	// Replicas is the bucket's replica count when it is created; zero
	// means 1.
	Replicas int

	once onceKeys
}

var _ edge.WebTickets = (*WebTickets)(nil)

// Use implements edge.WebTickets with a create-only put of the nonce.
// until is not used: the bucket's TTL outlives every ticket.
func (w *WebTickets) Use(ctx context.Context, nonce string, _ time.Time) (bool, error) {
	return w.once.claim(ctx, w.JetStream, jetstream.KeyValueConfig{
		Bucket: WebTicketsBucket, Description: "tether: web terminal tickets used", History: 1,
		Replicas: max(w.Replicas, 1), TTL: 2 * edge.WebTicketLifetime, MaxValueSize: 64,
	}, nonce, "record the ticket's use")
}
