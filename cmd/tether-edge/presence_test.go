package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/edge"
)

// testLogger writes to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestLazyPresenceBeforeStart: until the presence has started, the
// cluster state is unavailable, and says why.
func TestLazyPresenceBeforeStart(t *testing.T) {
	l := &lazyPresence{created: time.Now()}
	if _, err := l.Announce(context.Background(), edge.PresenceRecord{ID: "d"}); !errors.Is(err, edge.ErrClusterUnavailable) {
		t.Errorf("Announce: got %v; want ErrClusterUnavailable", err)
	}
	if err := l.Withdraw(context.Background(), "d", "n"); !errors.Is(err, edge.ErrClusterUnavailable) {
		t.Errorf("Withdraw: got %v; want ErrClusterUnavailable", err)
	}
	if _, ok := l.Lookup("d"); ok {
		t.Error("Lookup found a device before the presence started")
	}
	if got := len(l.List()) + len(l.Edges()); got != 0 {
		t.Errorf("List and Edges: got %d records; want none", got)
	}
	if err := l.Health(); !errors.Is(err, edge.ErrClusterUnavailable) || !strings.Contains(err.Error(), "joining the cluster") {
		t.Errorf("Health: got %v; want ErrClusterUnavailable, joining", err)
	}
	l.failed(errors.New("nats: no servers available"))
	if err := l.Health(); !errors.Is(err, edge.ErrClusterUnavailable) || !strings.Contains(err.Error(), "no servers available") {
		t.Errorf("Health after a failed start: got %v; want ErrClusterUnavailable with the reason", err)
	}
	if l.Age() < 0 {
		t.Errorf("Age: got %v; want the time since the edge started", l.Age())
	}
}

// TestClusterRuntimeSingleNode starts the runtime of a one-edge cluster
// with embedded NATS, in-process: a callback registered before the
// presence started sees the records announced after, and Close stops
// everything (goleak in TestMain checks the goroutines).
func TestClusterRuntimeSingleNode(t *testing.T) {
	p := writeClusterPKI(t)
	c, err := loadConfig(p.writeConfig(t, strings.Replace(clusterSection,
		`routes: ["127.0.0.1:6223", "127.0.0.1:6224"]`, `routes: []`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	c.cluster.Embedded.Store = filepath.Join(t.TempDir(), "nats")
	r, err := startCluster(c.cluster, c.lastSeenTTL, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	seen := make(chan edge.PresenceRecord, 16)
	ec := r.edgeCluster()
	ec.Presence.OnRecord(func(rec edge.PresenceRecord) { seen <- rec })
	if ec.EdgeID != "edge-1" || ec.PeerCA == nil || len(ec.PeerCert.Certificate) == 0 {
		t.Errorf("edge.Cluster: got ID %q, PeerCA %v, %d certificates; want edge-1 with the peer CA and certificate",
			ec.EdgeID, ec.PeerCA != nil, len(ec.PeerCert.Certificate))
	}
	waitFor(t, "the presence to start", func() bool { return ec.Presence.Health() == nil })
	if _, err := ec.Presence.Announce(context.Background(), edge.PresenceRecord{ID: "dev-1", Nonce: "n1", Since: time.Now()}); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	select {
	case rec := <-seen:
		if rec.ID != "dev-1" || rec.Edge != "edge-1" {
			t.Errorf("callback: got %+v; want dev-1 on edge-1", rec)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the callback registered before the start saw no record")
	}
	if got, ok := ec.Presence.Lookup("dev-1"); !ok || got.Edge != "edge-1" {
		t.Errorf("Lookup: got %+v, %v; want dev-1 on edge-1", got, ok)
	}
	if edges := ec.Presence.Edges(); len(edges) != 1 || edges[0].ID != "edge-1" || edges[0].Advertise != "https://127.0.0.1:8444" {
		t.Errorf("Edges: got %+v; want edge-1 advertising https://127.0.0.1:8444", edges)
	}
	r.Close()
	r.Close() // idempotent
	if err := ec.Presence.Health(); err == nil {
		t.Error("Health is nil after Close; want an error")
	}
}
