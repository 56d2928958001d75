package edge_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// stuckPipe is an audit sink whose reader does not read until resume: a
// real pipe, shrunk to one page so that it fills after a few records.
type stuckPipe struct {
	r, w    *os.File
	drained testutil.Buffer // what the reader read
	resume  func()
	done    chan struct{}
}

func newStuckPipe(t *testing.T) *stuckPipe {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	rc, err := w.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		_, err = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 4096)
	}))
	require.NoError(t, err)
	p := &stuckPipe{r: r, w: w, done: make(chan struct{})}
	start := make(chan struct{})
	var once sync.Once
	p.resume = func() { once.Do(func() { close(start) }) }
	go func() {
		defer close(p.done)
		<-start
		_, _ = io.Copy(&p.drained, r)
	}()
	return p
}

// close ends the reader; call it after the auditor is closed.
func (p *stuckPipe) close() {
	p.w.Close()
	p.resume()
	p.r.Close()
	<-p.done
}

func countLines(s, substr string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// With the audit sink stuck (a pipe whose reader stopped), TCP and UDP
// streams and refusals go on, while a PTY open fails closed with a clear
// error and never reaches the device. The sink being stuck is logged once
// and counted; once the reader resumes, that is logged too and shells run
// again, their command on record.
func TestStuckAuditSinkRefusesOnlyUnauditedShells(t *testing.T) {
	pipe := newStuckPipe(t)
	var logs testutil.Buffer
	metrics := &edge.Metrics{}
	a := &edge.JSONAuditor{W: pipe.w,
		QueueSize: 32, StuckAfter: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: metrics,
	}
	t.Cleanup(func() { // after the edge's clean-up, which is registered later
		require.NoError(t, a.Close())
		pipe.close()
	})
	m := newEdge(t, mock.Options{Auditor: a, Metrics: metrics, Limits: edge.Limits{AuditTimeout: time.Second}})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, tcpHandler)
	dev.Handle(wire.MsgUDP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		return nil
	})
	ptys := make(chan wire.PTYCommand, 10)
	dev.Handle(wire.MsgPTY, func(ctx context.Context, st *transport.Stream, p []byte) error {
		c, _ := wire.DecodePTYCommand(p)
		ptys <- c
		_ = wire.WriteOK(st, nil)
		return nil
	})
	echo := lineEcho(t)
	c := m.ClientFor("d-1")

	// Fill the pipe and the queue: every stream still works.
	blocked := func() bool {
		return metric(t, metrics, "tether_edge_audit_records_blocked_total") > 0 &&
			metric(t, metrics, "tether_edge_audit_records_dropped_total", `reason="queue_full"`) > 0
	}
	deadline := time.Now().Add(60 * time.Second)
	for !blocked() {
		require.False(t, time.Now().After(deadline), "the audit sink never counted as stuck")
		got, err := roundTrip(t, c, echo, "through")
		require.NoError(t, err, "a TCP stream must not wait for the audit log")
		require.Equal(t, "through", got)
	}
	require.Equal(t, 1.0, metric(t, metrics, "tether_edge_audit_sink_stuck"))
	st, _, err := c.OpenStream(ctxT(t), wire.MsgUDP, []byte("0:127.0.0.1:53"))
	require.NoError(t, err, "a UDP stream must not wait for the audit log")
	st.Close()
	code, _ := dialStatus(t, m, "/client/d-1", "Bearer wrong", m.ClientTLS())
	require.Equal(t, http.StatusUnauthorized, code, "refusals must not wait for the audit log")

	payload, err := wire.PTYCommand{Cols: 80, Rows: 24, Command: "uptime", CommandArgs: []string{"-p"}}.Encode()
	require.NoError(t, err)
	_, _, err = c.OpenStream(ctxT(t), wire.MsgPTY, payload)
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "got %v; want an Error answer", err)
	require.Contains(t, re.Reason, "audit log unavailable: ")
	select {
	case p := <-ptys:
		t.Fatalf("an unaudited shell reached the device: %+v", p)
	default:
	}
	require.Equal(t, 1, countLines(logs.String(), "audit log sink is stuck"), "logs:\n%s", logs.String())

	// The reader resumes: the sink recovers, and shells run again.
	pipe.resume()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "audit log sink recovered") },
		30*time.Second, 10*time.Millisecond, "logs:\n%s", logs.String())
	require.Equal(t, 0.0, metric(t, metrics, "tether_edge_audit_sink_stuck"))
	st, _, err = c.OpenStream(ctxT(t), wire.MsgPTY, payload)
	require.NoError(t, err)
	st.Close()
	require.Equal(t, "uptime", (<-ptys).Command)
	require.Eventually(t, func() bool {
		out := pipe.drained.String()
		return strings.Contains(out, `"event":"stream_request","device":"d-1","client":"ops","type":"pty","command":"uptime","args":["-p"]`)
	}, 30*time.Second, 10*time.Millisecond, "the shell's request is not on record:\n%s", pipe.drained.String())
	require.Equal(t, 1, countLines(logs.String(), "audit log sink is stuck"), "logs:\n%s", logs.String())
	require.Equal(t, 1, countLines(logs.String(), "audit log sink recovered"), "logs:\n%s", logs.String())
}

// Close writes what is queued, and ends a write that is stuck when the
// sink takes a deadline.
func TestJSONAuditorCloseIsBounded(t *testing.T) {
	pipe := newStuckPipe(t)
	defer pipe.close()
	metrics := &edge.Metrics{}
	a := &edge.JSONAuditor{W: pipe.w, CloseTimeout: 200 * time.Millisecond, Metrics: metrics}
	big := strings.Repeat("x", 1024)
	for i := 0; i < 100; i++ { // far more than the pipe holds
		a.Audit(edge.Event{Kind: edge.EventStreamClose, Reason: big})
	}
	err := a.Close()
	require.Error(t, err, "records that did not fit the stuck pipe were dropped")
	require.Contains(t, err.Error(), "dropped")
	require.Greater(t, metric(t, metrics, "tether_edge_audit_records_dropped_total"), 0.0)
	err = a.AuditWait(ctxT(t), edge.Event{Kind: edge.EventStreamRequest})
	require.ErrorIs(t, err, edge.ErrAuditUnavailable)
	a.Audit(edge.Event{Kind: edge.EventStreamOpen}) // dropped, not a panic
}

// The audit trail names what a PTY stream runs: stream_request (written
// before the device sees the request) and stream_open carry the command
// and its arguments; a login shell has none. A PTY request the edge cannot
// read is refused.
func TestPTYCommandIsAudited(t *testing.T) {
	m := newEdge(t, mock.Options{})
	dev := m.DeviceClientWithID("d-1")
	reached := make(chan string, 10)
	dev.Handle(wire.MsgPTY, func(ctx context.Context, st *transport.Stream, p []byte) error {
		reached <- string(p)
		_ = wire.WriteOK(st, nil)
		return nil
	})
	c := m.ClientFor("d-1")
	for _, tt := range []struct {
		name    string
		cmd     wire.PTYCommand
		command string
		args    []string
	}{
		{"login shell", wire.PTYCommand{Cols: 80, Rows: 24}, "", nil},
		{"command", wire.PTYCommand{Cols: 80, Rows: 24, Command: "systemctl", CommandArgs: []string{"restart", "app"}}, "systemctl", []string{"restart", "app"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			payload, err := tt.cmd.Encode()
			require.NoError(t, err)
			st, _, err := c.OpenStream(ctxT(t), wire.MsgPTY, payload)
			require.NoError(t, err)
			st.Close()
			<-reached
			for _, kind := range []string{edge.EventStreamRequest, edge.EventStreamOpen} {
				evs := eventsOf(m, kind)
				require.NotEmpty(t, evs, kind)
				e := evs[len(evs)-1]
				require.Equal(t, tt.command, e.Command, "%s: command", kind)
				require.Equal(t, tt.args, e.Args, "%s: args", kind)
				require.Equal(t, "pty", e.Type)
			}
		})
	}
	_, _, err := c.OpenStream(ctxT(t), wire.MsgPTY, []byte(`{"cols":-1}`))
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "got %v; want an Error answer", err)
	require.Contains(t, re.Reason, "bad pty request")
	select {
	case p := <-reached:
		t.Fatalf("an unreadable PTY request reached the device: %s", p)
	default:
	}
}

// Refused upgrades, which peers without any credential can cause at will,
// are audited at a bounded rate; the rest are counted.
func TestRefusedUpgradeAuditIsRateLimited(t *testing.T) {
	metrics := &edge.Metrics{}
	m := newEdge(t, mock.Options{Metrics: metrics, Limits: edge.Limits{RejectAuditRate: 0.001, RejectAuditBurst: 2}})
	for i := 0; i < 6; i++ {
		code, _ := dialStatus(t, m, "/client/d-1", "Bearer wrong", m.ClientTLS())
		require.Equal(t, http.StatusUnauthorized, code)
	}
	require.Len(t, eventsOf(m, edge.EventClientRejected), 2)
	require.Equal(t, 4.0, metric(t, metrics, "tether_edge_audit_records_suppressed_total"))
	require.Equal(t, 6.0, metric(t, metrics, "tether_edge_upgrade_failures_total", `reason="bad_token"`), "every refusal is still counted")
}

// writeLog is an audit sink that keeps each write apart.
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *writeLog) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

// kindsOf returns the event kinds of a write's lines, in order.
func kindsOf(t *testing.T, write string) []string {
	t.Helper()
	var kinds []string
	for _, line := range strings.SplitAfter(write, "\n") {
		if line == "" {
			continue
		}
		var e edge.Event
		require.NoError(t, json.Unmarshal([]byte(line), &e), "line %q", line)
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// Records that come soon after a write wait for the coalescing interval
// and go out in one write with those that came meanwhile. A record after
// a quiet spell goes at once, and so do a record that a caller waits for,
// a full batch and Close.
func TestJSONAuditorCoalescesWrites(t *testing.T) {
	sink := &writeLog{}
	a := &edge.JSONAuditor{W: sink, Coalesce: time.Hour}
	a.Audit(edge.Event{Kind: "first"})
	require.Eventually(t, func() bool { return len(sink.get()) == 1 }, 10*time.Second, time.Millisecond,
		"a record after a quiet spell goes at once")

	a.Audit(edge.Event{Kind: "second"})
	a.Audit(edge.Event{Kind: "third"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.AuditWait(ctx, edge.Event{Kind: "waited"}), "a record waited for does not wait for the interval")
	writes := sink.get()
	require.Len(t, writes, 2, "the records that came within the interval went out in one write")
	require.Equal(t, []string{"second", "third", "waited"}, kindsOf(t, writes[1]))

	// More than a write takes (64 KiB) goes without waiting; the rest
	// waits for the interval.
	reason := strings.Repeat("r", 1024)
	const many = 600
	for range many {
		a.Audit(edge.Event{Kind: "big", Reason: reason})
	}
	var big int
	require.Eventually(t, func() bool {
		big = 0
		for _, w := range sink.get()[2:] {
			big += len(kindsOf(t, w))
		}
		return big >= many-256
	}, 10*time.Second, time.Millisecond, "full batches go at once")
	require.Less(t, big, many, "what does not fill a batch waits")

	a.Audit(edge.Event{Kind: "last"})
	require.NoError(t, a.Close())
	var kinds []string
	for _, w := range sink.get() {
		kinds = append(kinds, kindsOf(t, w)...)
	}
	require.Len(t, kinds, many+5, "Close writes what waited")
	require.Equal(t, "last", kinds[len(kinds)-1])
}
