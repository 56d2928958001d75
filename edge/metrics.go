package edge

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the edge's Prometheus metrics, on their own registry beside
// the Go runtime and process collectors. A nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	devices        prometheus.Gauge
	clientSessions prometheus.Gauge
	streamsActive  *prometheus.GaugeVec
	streamsTotal   *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	upgradeFails   *prometheus.CounterVec
	stalled        prometheus.Counter
	sessionsClosed *prometheus.CounterVec
	auditDrops     *prometheus.CounterVec
	auditBlocks    prometheus.Counter
	auditStuckG    prometheus.Gauge
	auditSuppress  prometheus.Counter
}

// NewMetrics creates the metrics and their registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_edge_devices_connected", Help: "Devices with a live session.",
		}),
		clientSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_edge_client_sessions", Help: "Live client sessions.",
		}),
		streamsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_edge_streams_active", Help: "Spliced streams open now, by type.",
		}, []string{"type"}),
		streamsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_edge_streams_total", Help: "Client streams, by type and result (ok, denied, invalid, limit, offline, draining, revoked, closed, audit_unavailable, device_error).",
		}, []string{"type", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_edge_bytes_total", Help: "Bytes spliced, by direction (up: client to device, down: device to client).",
		}, []string{"direction"}),
		upgradeFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_edge_upgrade_failures_total", Help: "Refused upgrades, by reason.",
		}, []string{"reason"}),
		stalled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_edge_stalled_streams_reset_total", Help: "Spliced streams reset because a reader made no progress while data waited.",
		}),
		sessionsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_edge_client_sessions_closed_total", Help: "Client sessions the edge closed, by reason (revoked: a reload removed the credential or its rights; no_stream: no stream opened in time).",
		}, []string{"reason"}),
		auditDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_edge_audit_records_dropped_total", Help: "Audit records never written, by reason (queue_full, write_error, closed).",
		}, []string{"reason"}),
		auditBlocks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_edge_audit_records_blocked_total", Help: "Audit records whose write to the sink had not returned after the stuck threshold.",
		}),
		auditStuckG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_edge_audit_sink_stuck", Help: "1 while a write to the audit sink is stuck, else 0.",
		}),
		auditSuppress: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_edge_audit_records_suppressed_total", Help: "Refused-upgrade audit records left out by the audit rate limit.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.devices, m.clientSessions, m.streamsActive, m.streamsTotal, m.bytes, m.upgradeFails, m.stalled,
		m.sessionsClosed, m.auditDrops, m.auditBlocks, m.auditStuckG, m.auditSuppress,
	)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry, for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) deviceDelta(d float64) {
	if m != nil {
		m.devices.Add(d)
	}
}

func (m *Metrics) clientDelta(d float64) {
	if m != nil {
		m.clientSessions.Add(d)
	}
}

func (m *Metrics) activeDelta(typ string, d float64) {
	if m != nil {
		m.streamsActive.WithLabelValues(typ).Add(d)
	}
}

func (m *Metrics) stream(typ, result string) {
	if m != nil {
		m.streamsTotal.WithLabelValues(typ, result).Inc()
	}
}

func (m *Metrics) addBytes(up, down int64) {
	if m != nil {
		m.bytes.WithLabelValues("up").Add(float64(up))
		m.bytes.WithLabelValues("down").Add(float64(down))
	}
}

func (m *Metrics) upgradeFailure(reason string) {
	if m != nil {
		m.upgradeFails.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) stalledReset() {
	if m != nil {
		m.stalled.Inc()
	}
}

func (m *Metrics) sessionClosed(reason string) {
	if m != nil {
		m.sessionsClosed.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) auditDropped(reason string, n int) {
	if m != nil {
		m.auditDrops.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *Metrics) auditBlocked(n int) {
	if m != nil {
		m.auditBlocks.Add(float64(n))
	}
}

func (m *Metrics) auditStuck(stuck bool) {
	if m != nil {
		v := 0.0
		if stuck {
			v = 1
		}
		m.auditStuckG.Set(v)
	}
}

func (m *Metrics) auditSuppressed() {
	if m != nil {
		m.auditSuppress.Inc()
	}
}
