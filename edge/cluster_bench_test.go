package edge_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
)

// announceClock is a presence that notes when each device's announcement
// starts.
type announceClock struct {
	edge.Presence
	mu sync.Mutex
	at map[string]time.Time
}

func (p *announceClock) Announce(ctx context.Context, rec edge.PresenceRecord) (uint64, error) {
	p.mu.Lock()
	p.at[rec.ID] = time.Now()
	p.mu.Unlock()
	return p.Presence.Announce(ctx, rec)
}

// BenchmarkPresencePropagation connects devices one at a time to edge e2
// and measures until edge e1 can locate each: from the start of e2's
// announcement (presence alone), and from the device's dial (connect to
// locate). Two real edges in this process share a real NATS server.
func BenchmarkPresencePropagation(b *testing.B) {
	const n = 300
	clock := &announceClock{at: map[string]time.Time{}}
	rig := newClusterRig(b)
	rig.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	rig.wrap = map[string]func(edge.Presence) edge.Presence{"e2": func(p edge.Presence) edge.Presence {
		clock.Presence = p
		return clock
	}}
	rig.start("e1")
	rig.start("e2")

	var mu sync.Mutex
	located := map[string]time.Time{}
	arrived := make(chan struct{}, 1)
	rig.edges["e1"].presence.OnRecord(func(rec edge.PresenceRecord) {
		if rec.Deleted || rec.Edge != "e2" {
			return
		}
		mu.Lock()
		if _, ok := located[rec.ID]; !ok {
			located[rec.ID] = time.Now()
		}
		mu.Unlock()
		select {
		case arrived <- struct{}{}:
		default:
		}
	})
	var presence, connect []time.Duration
	for i := range n + 10 {
		id := fmt.Sprintf("p-%d", i)
		tlsConf := rig.pki.DeviceTLS(rig.pki.Device(id)) // issuing the certificate is not connecting
		t0 := time.Now()
		rig.deviceWith("e2", id, tlsConf, nil)
		deadline := time.After(10 * time.Second)
		for {
			mu.Lock()
			at, ok := located[id]
			mu.Unlock()
			if ok {
				if i >= 10 { // the first ones warm up
					clock.mu.Lock()
					presence = append(presence, at.Sub(clock.at[id]))
					clock.mu.Unlock()
					connect = append(connect, at.Sub(t0))
				}
				break
			}
			select {
			case <-arrived:
			case <-deadline:
				b.Fatalf("e1 never located %s", id)
			}
		}
		if _, ok := rig.edges["e1"].srv.Cluster.Presence.Lookup(id); !ok {
			b.Fatalf("e1 was told of %s but cannot locate it", id)
		}
	}
	sortDurations(presence)
	sortDurations(connect)
	b.ReportMetric(pct(presence, 0.5)/1000, "presence-p50-ms")
	b.ReportMetric(pct(presence, 0.99)/1000, "presence-p99-ms")
	b.ReportMetric(pct(connect, 0.5)/1000, "connect-to-locate-p50-ms")
	b.ReportMetric(pct(connect, 0.99)/1000, "connect-to-locate-p99-ms")
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// BenchmarkClusterOpen opens streams to a device on e1 from a client on
// e1 (direct) and from a client on e2 (across the peer session), in this
// process, and reports both and the difference, open to first byte.
func BenchmarkClusterOpen(b *testing.B) {
	rig := newClusterRig(b)
	rig.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	rig.start("e1")
	rig.start("e2")
	rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	echo := testutil.TCPServer(b, testutil.LineEcho)
	measure := func(cl *client.Client) []time.Duration {
		var out []time.Duration
		one := make([]byte, 1)
		for i := range 1020 {
			t0 := time.Now()
			conn, err := tcp.Dial(context.Background(), cl, echo)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Write([]byte{'x'}); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(conn, one); err != nil {
				b.Fatal(err)
			}
			if i >= 20 {
				out = append(out, time.Since(t0))
			}
			conn.Close()
		}
		sortDurations(out)
		return out
	}
	direct := measure(rig.client("e1", "d-1"))
	cross := measure(rig.client("e2", "d-1"))
	b.ReportMetric(pct(direct, 0.5), "direct-p50-us")
	b.ReportMetric(pct(direct, 0.99), "direct-p99-us")
	b.ReportMetric(pct(cross, 0.5)-pct(direct, 0.5), "cross-extra-p50-us")
	b.ReportMetric(pct(cross, 0.99)-pct(direct, 0.99), "cross-extra-p99-us")
}
