package edge

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
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
		func() float64 { return c.Presence.Age().Seconds() },
		func() float64 {
			cert, err := c.peerCertificate()
			if err != nil || len(cert.Certificate) == 0 {
				return math.NaN()
			}
			leaf := cert.Leaf
			if leaf == nil {
				if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
					return math.NaN()
				}
			}
			return float64(leaf.NotAfter.Unix())
		})
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
// a local session or a record on another edge: the newest connection
// wins.
func (s *Server) announce(d *Device) {
	s.writeRecord(d, false)
}

// announceAgain writes d's record again after it went missing from the
// view, unless another session's record took its place: that one is
// newer than d's, and stays.
func (s *Server) announceAgain(d *Device) {
	s.writeRecord(d, true)
}

func (s *Server) writeRecord(d *Device, again bool) {
	c := s.Cluster
	if c == nil || !d.announcing.CompareAndSwap(false, true) {
		return // one announcement at a time per session
	}
	defer d.announcing.Store(false)
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	rec := PresenceRecord{ID: d.ID, Nonce: d.nonce, Since: d.Since.UTC(),
		Takeover: d.takeover, RemoteAddr: addrString(d.RemoteAddr), Serial: d.Serial, AgentInfo: d.Agent, Labels: d.Labels}
	var rev uint64
	var err error
	if prev := d.rev.Load(); again && prev != 0 {
		rev, err = c.Presence.Reannounce(ctx, rec, prev)
	} else {
		rev, err = c.Presence.Announce(ctx, rec)
	}
	s.Metrics.presenceWrite("announce", err)
	if errors.Is(err, ErrRecordReplaced) {
		// A newer session holds the device's record: once the view shows
		// it, the session here goes (onPresence). Until then it is tried
		// again after lostRecordAfter, not at every check: the record may
		// be a dead edge's, which the cluster removes in time.
		d.announced.Store(time.Now().UnixNano())
		s.log.Debug("a device's record was replaced by another session's; not writing it again", "device", d.ID)
		return
	}
	if err != nil {
		if d.announceFailed.CompareAndSwap(false, true) {
			s.log.Warn("cannot announce a device to the cluster yet; it is reachable through this edge only until it is (retried every second)", "device", d.ID, "err", err)
		}
		return
	}
	if d.announceFailed.Swap(false) {
		s.log.Info("device announced to the cluster after all", "device", d.ID)
	}
	d.announced.Store(time.Now().UnixNano())
	d.rev.Store(rev)
	// A write that took a while can land after the session ended or a
	// newer one of the device replaced it here: its record would then name
	// a session that is gone, for as long as this edge lives (withdrawing
	// the newer session's nonce leaves it). It goes, and the newer session
	// writes its own again.
	if cur, ok := s.reg.Lookup(d.ID); !ok || cur != d {
		s.withdraw(d)
		if ok {
			s.announce(cur)
		}
	}
}

// withdraw removes d's record, unless a newer session's replaced it. A
// draining edge leaves the record: the device is on its way to another
// edge, whose record replaces this one, and until it does an open finds
// the device moving (GoAway) rather than gone. The record goes with this
// edge's own key when it leaves the cluster.
func (s *Server) withdraw(d *Device) {
	c := s.Cluster
	if c == nil || s.isDraining() {
		return // the record is cleared with its edge, later
	}
	if c.Presence.Health() != nil {
		s.leftovers.Store(true) // the record is reconciled later
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := c.Presence.Withdraw(ctx, d.ID, d.nonce)
	s.Metrics.presenceWrite("withdraw", err)
	if err != nil {
		s.leftovers.Store(true)
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
	if !ok || d.nonce == rec.Nonce {
		return
	}
	// Until this session's own record is stored, its revision is unknown:
	// an older record (of the session this one replaced, say) delivered
	// meanwhile would look newer. The reconcile loop compares them once
	// the revision is known.
	if mine := d.rev.Load(); mine == 0 || rec.Revision <= mine {
		return
	}
	// Not on the watcher's goroutine, which the close would hold up; Close
	// waits for it.
	if !s.track1() {
		return // the edge is closing, and closes the session itself
	}
	go func() {
		defer s.wg.Done()
		s.log.Info("device reconnected to another edge; closing the session here", "device", d.ID, "edge", rec.Edge)
		d.close("replaced by a newer connection on edge " + rec.Edge)
	}()
}

// reconcileLoop checks, every reconcileEvery, that presence holds this
// edge's record for each device it holds: an announcement that failed
// (the store was unreachable, or electing a leader after an edge died) is
// tried again, a record that went missing is written again, a record of
// a newer session elsewhere closes the session here, and a record of this
// edge for a device it no longer holds is removed. The checks read
// the local view only; they write only what is missing or left over.
func (s *Server) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	healthy := true
	// The records of this edge for devices it does not hold are looked for
	// at start (an earlier run of this edge may have left some), once the
	// state is back, and after a withdrawal was skipped or failed, until a
	// look finds none.
	scan := true
	orphans := make(map[string]string)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.Cluster.Presence.Health() == nil
		if now && !healthy {
			s.log.Info("cluster state available again; reconciling this edge's devices")
			scan = true
		}
		healthy = now
		if now {
			scan = s.reconcile(orphans, s.leftovers.Swap(false) || scan)
		}
	}
}

// lostRecordAfter is how long after its announcement a device's record
// may be missing from the view before it is written again: the view lags
// the store a little, and a second write per device is what a reconnect
// storm must not cost.
const lostRecordAfter = 5 * time.Second

// reconcileWorkers bounds the announcements one reconcile runs at once:
// while the store elects a leader each may wait out its timeout.
const reconcileWorkers = 16

// reconcile runs one check; with scan, it also looks for the records of
// this edge for devices it does not hold, which orphans carries from one
// look to the next (see orphanedRecords). It reports whether the next
// check must look again: this one found some.
func (s *Server) reconcile(orphans map[string]string, scan bool) bool {
	var todo []func()
	for _, d := range s.reg.List() {
		if d.announcing.Load() {
			continue // its announcement is under way
		}
		if d.rev.Load() == 0 {
			todo = append(todo, func() { s.announce(d) }) // never stored yet
			continue
		}
		rec, ok := s.Cluster.Presence.Lookup(d.ID)
		switch {
		case ok && rec.Nonce == d.nonce:
		case ok && rec.Edge != s.Cluster.EdgeID && rec.Revision > d.rev.Load():
			s.onPresence(rec)
		case !ok && time.Since(time.Unix(0, d.announced.Load())) > lostRecordAfter:
			todo = append(todo, func() { s.announceAgain(d) })
		}
	}
	if scan {
		todo = append(todo, s.orphanedRecords(orphans)...)
	}
	work := make(chan func())
	var wg sync.WaitGroup
	for range min(reconcileWorkers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fn := range work {
				fn()
			}
		}()
	}
	for _, fn := range todo {
		work <- fn
	}
	close(work)
	wg.Wait()
	return scan && len(orphans) > 0
}

// orphanedRecords returns the removals of the records that name this edge
// for devices it does not hold, found so (with the same nonce) by two
// checks in a row, since a device that just left removes its own record
// meanwhile. Such records are of devices that left while the store was
// unreachable (their removal was skipped), or that this edge held before
// it restarted; nothing else removes them while this edge is alive, and
// every edge lists their devices as connected. seen holds the records
// found by the previous check and is replaced by this one's. A draining
// edge leaves the records of its devices in place, as withdraw does.
func (s *Server) orphanedRecords(seen map[string]string) []func() {
	prev := maps.Clone(seen)
	clear(seen)
	if s.isDraining() {
		return nil
	}
	var out []func()
	for _, rec := range s.Cluster.Presence.List() {
		if rec.Edge != s.Cluster.EdgeID {
			continue
		}
		if _, ok := s.reg.Lookup(rec.ID); ok {
			continue
		}
		seen[rec.ID] = rec.Nonce
		if nonce, ok := prev[rec.ID]; ok && nonce == rec.Nonce {
			out = append(out, func() {
				ctx, cancel := context.WithTimeout(s.ctx, 3*time.Second)
				defer cancel()
				err := s.Cluster.Presence.Withdraw(ctx, rec.ID, rec.Nonce)
				s.Metrics.presenceWrite("withdraw", err)
				if err == nil {
					s.log.Info("removed the record of a device this edge no longer holds", "device", rec.ID)
				}
			})
		}
	}
	return out
}

// moveWait bounds how long a draining edge of a cluster waits for its
// devices to show up on other edges.
const moveWait = 10 * time.Second

// awaitMoved waits, within ctx and moveWait, until presence shows each of
// devs (sent GoAway by a drain) on another edge, or without a record:
// until then, peers still send this edge the streams for them, and it
// answers GoAway so they look again. Leaving sooner would turn those
// streams into failures. A device that does not come back is not waited
// for past moveWait.
func (s *Server) awaitMoved(ctx context.Context, devs []*Device) error {
	c := s.Cluster
	if c == nil || len(devs) == 0 || c.Presence.Health() != nil {
		return nil
	}
	wait, cancel := context.WithTimeout(ctx, moveWait)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		here := 0
		for _, d := range devs {
			if rec, ok := c.Presence.Lookup(d.ID); ok && rec.Edge == c.EdgeID {
				here++
			}
		}
		if here == 0 {
			return nil
		}
		select {
		case <-wait.Done():
			s.log.Warn("drain: devices did not show up on other edges in time; leaving anyway", "devices", here)
			return ctx.Err()
		case <-t.C:
		}
	}
}
