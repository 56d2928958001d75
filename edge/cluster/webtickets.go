package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

	mu sync.Mutex
	// mu guards the following.
	kv jetstream.KeyValue
}

var _ edge.WebTickets = (*WebTickets)(nil)

func (w *WebTickets) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kv != nil {
		return w.kv, nil
	}
	kv, err := bucket(ctx, w.JetStream, jetstream.KeyValueConfig{
		Bucket: WebTicketsBucket, Description: "tether: web terminal tickets used", History: 1,
		Replicas: max(w.Replicas, 1), TTL: 2 * edge.WebTicketLifetime, MaxValueSize: 64,
	})
	if err != nil {
		return nil, err
	}
	w.kv = kv
	return kv, nil
}

// Use implements edge.WebTickets with a create-only put of the nonce.
// until is not used: the bucket's TTL outlives every ticket.
func (w *WebTickets) Use(ctx context.Context, nonce string, _ time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	kv, err := w.bucket(ctx)
	if err == nil {
		_, err = kv.Create(ctx, nonce, []byte{1})
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
	}
	if err != nil {
		return false, fmt.Errorf("%w: record the ticket's use: %v", edge.ErrClusterUnavailable, err)
	}
	return true, nil
}
