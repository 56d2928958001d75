package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// This file is the edge's part of a cluster's presence: it announces the
// devices it holds, withdraws them when they leave, closes a session that
// a newer connection replaced on another edge, and keeps its records in
// place when the store was unreachable for a while.

// startCluster starts the peer sessions and the presence bookkeeping of a
// clustered edge. It runs once, from init; Close ends both.
func (s *Server) startCluster() {
	c := s.Cluster
	if c.TakeoverHold <= 0 {
		c.TakeoverHold = DefaultTakeoverHold
	}
	s.peers = newPeerSet(s)
	c.Presence.OnRecord(s.onPresence)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.peers.run(s.ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.reconcileLoop(s.ctx)
	}()
	s.Metrics.clusterGauges(func() float64 {
		if c.Presence.Health() == nil {
			return 1
		}
		return 0
	}, func() float64 { return float64(s.peers.up()) },
		func() float64 { return float64(len(c.Presence.List())) },
		func() float64 { return c.Presence.Age().Seconds() })
}

// newNonce names one session of a device.
func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// takeoverRefusal returns why a new session for id must be refused, or
// "": the session it would replace, here or on another edge, itself
// replaced another within TakeoverHold. Two devices that share one
// certificate would otherwise push each other off for ever; the second
// one is told instead, and a device that genuinely moved comes back as
// soon as its old session is found dead.
func (s *Server) takeoverRefusal(id string) string {
	hold := DefaultTakeoverHold
	if s.Cluster != nil {
		hold = s.Cluster.TakeoverHold
	}
	if d, ok := s.reg.Lookup(id); ok && d.takeover && time.Since(d.Since) < hold {
		return fmt.Sprintf("device ID %s already connected here %v ago, replacing another connection; two devices may share one certificate (give each its own), or retry in %v",
			id, time.Since(d.Since).Round(time.Second), hold)
	}
	if s.Cluster == nil {
		return ""
	}
	rec, ok := s.Cluster.Presence.Lookup(id)
	if ok && rec.Edge != s.Cluster.EdgeID && rec.Takeover && time.Since(rec.Since) < hold {
		return fmt.Sprintf("device ID %s already connected on edge %s %v ago, replacing another connection; two devices may share one certificate (give each its own), or retry in %v",
			id, rec.Edge, time.Since(rec.Since).Round(time.Second), hold)
	}
	return ""
}

// announce records in presence that this edge holds d, after d replaced
// replaced (a local session) or a live record on another edge.
func (s *Server) announce(d *Device) {
	c := s.Cluster
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	rev, err := c.Presence.Announce(ctx, PresenceRecord{ID: d.ID, Nonce: d.nonce, Since: d.Since.UTC(),
		Takeover: d.takeover, RemoteAddr: addrString(d.RemoteAddr), Serial: d.Serial})
	if err != nil {
		s.log.Warn("cannot announce a device to the cluster; it is reachable through this edge only until the cluster state is back", "device", d.ID, "err", err)
		return
	}
	d.rev.Store(rev)
}

// withdraw removes d's record, unless a newer session's replaced it.
func (s *Server) withdraw(d *Device) {
	c := s.Cluster
	if c == nil || c.Presence.Health() != nil {
		return // the record is reconciled, or cleared with its edge, later
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Presence.Withdraw(ctx, d.ID, d.nonce); err != nil {
		s.log.Debug("cannot withdraw a device's record; the cluster will clear it", "device", d.ID, "err", err)
	}
}

// onPresence runs for every record the presence view sees change: a
// record for a device this edge holds that names another session, and was
// written after this edge's own record, means a newer connection of the
// device reached another edge. This edge's session goes, once.
func (s *Server) onPresence(rec PresenceRecord) {
	if rec.Deleted || rec.Edge == s.Cluster.EdgeID {
		return
	}
	d, ok := s.reg.Lookup(rec.ID)
	if !ok || d.nonce == rec.Nonce || rec.Revision <= d.rev.Load() {
		return
	}
	go func() {
		s.log.Info("device reconnected to another edge; closing the session here", "device", d.ID, "edge", rec.Edge)
		d.close("replaced by a newer connection on edge " + rec.Edge)
	}()
}

// reconcileLoop checks, every reconcileEvery, that presence holds this
// edge's record for each device it holds: a record lost while the store
// was unreachable is written again; a record of a newer session elsewhere
// closes the session here.
func (s *Server) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	healthy := s.Cluster.Presence.Health() == nil
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reconcile()
		case <-check.C:
			// Reconcile at once when the store comes back.
			now := s.Cluster.Presence.Health() == nil
			if now && !healthy {
				s.log.Info("cluster state available again; reconciling this edge's devices")
				s.reconcile()
			}
			healthy = now
		}
	}
}

func (s *Server) reconcile() {
	if s.Cluster.Presence.Health() != nil {
		return
	}
	for _, d := range s.reg.List() {
		rec, ok := s.Cluster.Presence.Lookup(d.ID)
		switch {
		case ok && rec.Nonce == d.nonce:
		case ok && rec.Edge != s.Cluster.EdgeID && rec.Revision > d.rev.Load():
			s.onPresence(rec)
		default:
			s.announce(d)
		}
	}
}
