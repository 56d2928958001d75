package cluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/edge"
)

// onceKeys is a bucket of keys that each go to the first edge that
// creates them: a create-only put, which fails on every other edge. It
// binds the bucket on first use, and again after a failure.
type onceKeys struct {
	mu sync.Mutex
	// mu guards the following.
	kv jetstream.KeyValue
}

// claim creates key in the bucket of cfg and reports whether this call
// created it; what names the record in errors ("record the ticket's
// use"). An unreachable bucket is edge.ErrClusterUnavailable.
func (o *onceKeys) claim(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, key, what string) (bool, error) {
	kv, err := o.bucket(ctx, js, cfg)
	if err == nil {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err = kv.Create(octx, key, []byte{1})
		cancel()
		if conflict(err) {
			return false, nil
		}
		if err != nil {
			o.forget(kv)
		}
	}
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", edge.ErrClusterUnavailable, what, err)
	}
	return true, nil
}

func (o *onceKeys) bucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.kv != nil {
		return o.kv, nil
	}
	kv, err := bucket(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	o.kv = kv
	return kv, nil
}

// forget drops kv after an operation on it failed, so that the next claim
// binds the bucket again: it may have gone with the store (NATS came back
// without its state), and binding creates it.
func (o *onceKeys) forget(kv jetstream.KeyValue) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.kv == kv {
		o.kv = nil
	}
}
