package e2e

import (
	"bufio"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stormDevices is how many agents the reconnect-storm test runs.
const stormDevices = 100

// TestReconnectStorm: an edge with 100 devices is killed with -9 and
// restarted 3 s later. Every device must come back, and none may hammer
// the edge: at most three dials in any 10 s. The test reports how long the
// last device took and the most dials any device made.
func TestReconnectStorm(t *testing.T) {
	s := newSystem(t)
	agents := make([]*proc, stormDevices)
	ids := make([]string, stormDevices)
	for i := range agents {
		ids[i] = fmt.Sprintf("storm-%03d", i)
		agents[i] = s.startAgent(agentOpts{id: ids[i]}, "--log-level", "debug")
	}
	s.waitAllConnected(ids, 60*time.Second)

	s.edge.Kill9()
	killed := time.Now()
	time.Sleep(3 * time.Second)
	s.startEdge()
	restarted := time.Now()
	s.waitAllConnected(ids, 60*time.Second)
	back := time.Since(restarted)

	// Every dial is logged once: connected, or could not reach the edge.
	maxIn10s, maxTotal := 0, 0
	for i, a := range agents {
		dials := dialTimes(t, a.Output(), killed)
		maxTotal = max(maxTotal, len(dials))
		for j := range dials {
			n := 0
			for k := j; k < len(dials) && dials[k].Sub(dials[j]) < 10*time.Second; k++ {
				n++
			}
			maxIn10s = max(maxIn10s, n)
			if n > 3 {
				t.Errorf("%s dialed %d times within 10 s: %v", ids[i], n, dials)
			}
		}
	}
	t.Logf("reconnect storm: %d devices, edge down 3 s: last device back %v after the restart; at most %d dials per device (%d within any 10 s)",
		stormDevices, back.Round(10*time.Millisecond), maxTotal, maxIn10s)
}

// dialTimes returns the times of the agent's dials after since, read from
// its debug log.
func dialTimes(t *testing.T, log string, since time.Time) []time.Time {
	t.Helper()
	var out []time.Time
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="connected to edge"`) && !strings.Contains(line, "reach edge") {
			continue
		}
		ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		require.NoError(t, err, line)
		if at.After(since) {
			out = append(out, at)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// startAgent writes an agent config and starts tether-agent without
// waiting for it to connect.
func (s *system) startAgent(o agentOpts, flags ...string) *proc {
	s.t.Helper()
	path := s.agentConfig(o)
	return start(s.t, "tether-agent", append([]string{"--config", path}, flags...)...)
}

// waitAllConnected waits until the edge lists every device in ids.
func (s *system) waitAllConnected(ids []string, within time.Duration) {
	s.t.Helper()
	var (
		mu      sync.Mutex
		missing []string
	)
	require.Eventually(s.t, func() bool {
		devs, err := s.devices()
		if err != nil {
			return false
		}
		have := make(map[string]bool, len(devs))
		for _, d := range devs {
			have[d.ID] = true
		}
		mu.Lock()
		defer mu.Unlock()
		missing = missing[:0]
		for _, id := range ids {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	}, within, 50*time.Millisecond, "devices not connected: %v", func() []string { mu.Lock(); defer mu.Unlock(); return missing }())
}

// agentConfigPath is where an agent's config lives.
func (s *system) agentConfigPath(id string) string { return filepath.Join(s.dir, id+".yaml") }
