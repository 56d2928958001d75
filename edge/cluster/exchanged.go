package cluster

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/edge"
)

// ExchangedBucket keeps the SHA-256 of the ID tokens exchanged for user
// certificates, so that each is exchanged once on all the edges of the
// cluster. Its TTL outlasts the ID tokens a provider issues.
const ExchangedBucket = "tether_exchanged_tokens"

// DefaultExchangedTTL is how long ExchangedBucket keeps a record: longer
// than an ID token lives (providers issue them for minutes to an hour).
const DefaultExchangedTTL = 24 * time.Hour

// ExchangedTokens is the edge.ExchangedTokens of a cluster, in the
// ExchangedBucket, which it binds on first use (and again after a
// failure). Until the bucket can be reached, exchanges are refused.
type ExchangedTokens struct {
	// JetStream is the JetStream context of a NATS connection. Required.
	JetStream jetstream.JetStream
	// Replicas is the bucket's replica count when it is created; zero
	// means 1.
	Replicas int
	// TTL is how long a record is kept; zero means DefaultExchangedTTL.
	TTL time.Duration

	once onceKeys
}

var _ edge.ExchangedTokens = (*ExchangedTokens)(nil)

// Claim implements edge.ExchangedTokens: it creates the record of key,
// which fails on every edge but the first. until is not used: the
// bucket's TTL expires the record.
func (x *ExchangedTokens) Claim(ctx context.Context, key string, _ time.Time) (bool, error) {
	ttl := x.TTL
	if ttl <= 0 {
		ttl = DefaultExchangedTTL
	}
	return x.once.claim(ctx, x.JetStream, jetstream.KeyValueConfig{
		Bucket: ExchangedBucket, Description: "tether: ID tokens exchanged for user certificates", History: 1,
		Replicas: max(x.Replicas, 1), TTL: ttl, MaxValueSize: 64,
	}, key, "record the exchanged ID token")
}
