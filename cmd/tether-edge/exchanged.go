package main

import (
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
)

// exchangedTokens is the record of the ID tokens exchanged for user
// certificates, shared by the edges of the cluster.
func (r *clusterRuntime) exchangedTokens() edge.ExchangedTokens {
	return &cluster.ExchangedTokens{JetStream: r.js, Replicas: r.settings.Replicas}
}
