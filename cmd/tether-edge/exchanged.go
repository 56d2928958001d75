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

// exchangedStore is the record of the ID tokens exchanged for user
// certificates that sign-in keeps, at start or from the reload that adds
// auth.oidc: the cluster's bucket, or the file of a single edge's
// state_dir, opened on first need and closed when the edge stops; none
// without either (each sign-in remembers its own, in memory).
type exchangedStore struct {
	cluster edge.ExchangedTokens
	file    *edge.FileExchangedTokens
}

// get returns the record for a configuration whose exchanged-tokens file
// is path ("" without a state_dir or auth.oidc).
func (e *exchangedStore) get(path string) (edge.ExchangedTokens, error) {
	switch {
	case e.cluster != nil:
		return e.cluster, nil
	case e.file != nil:
		return e.file, nil
	case path == "":
		return nil, nil
	}
	f, err := edge.OpenExchangedTokens(path)
	if err != nil {
		return nil, err
	}
	e.file = f
	return f, nil
}

func (e *exchangedStore) Close() error {
	if e.file == nil {
		return nil
	}
	return e.file.Close()
}
