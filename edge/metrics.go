package edge

import (
	"crypto/x509"
	"errors"
	"math"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the edge's Prometheus metrics, on their own registry beside
// the Go runtime and process collectors. The zero value is ready to use
// (its registry is made on first use); share one between the Server and
// its JSONAuditor. A nil *Metrics records nothing.
//
//	metrics := &edge.Metrics{}
//	mux.Handle("/metrics", metrics.Handler())
type Metrics struct {
	initOnce sync.Once
	reg      *prometheus.Registry

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
	presenceWrites *prometheus.CounterVec
}

// init makes the metrics and their registry, once.
func (m *Metrics) init() {
	m.initOnce.Do(m.build)
}

// on reports whether m records, making its metrics on first use.
func (m *Metrics) on() bool {
	if m == nil {
		return false
	}
	m.init()
	return true
}

func (m *Metrics) build() {
	m.reg = prometheus.NewRegistry()
	// Registered by clusterGauges: an edge without a cluster shows none.
	m.presenceWrites = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_edge_cluster_presence_writes_total",
		Help: "Writes of device records to the cluster's presence, by operation (announce, withdraw) and result (ok, replaced: another session's record was in place, error)."}, []string{"op", "result"})
	m.devices = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tether_edge_devices_connected", Help: "Devices with a live session.",
	})
	m.clientSessions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tether_edge_client_sessions", Help: "Live client sessions.",
	})
	m.streamsActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tether_edge_streams_active", Help: "Spliced streams open now, by type.",
	}, []string{"type"})
	m.streamsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_edge_streams_total", Help: "Client streams, by type and result (ok, denied, invalid, limit, offline, draining, revoked, closed, audit_unavailable, device_error).",
	}, []string{"type", "result"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_edge_bytes_total", Help: "Bytes spliced, by direction (up: client to device, down: device to client).",
	}, []string{"direction"})
	m.upgradeFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_edge_upgrade_failures_total", Help: "Refused upgrades, by reason.",
	}, []string{"reason"})
	m.stalled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tether_edge_stalled_streams_reset_total", Help: "Spliced streams reset because a reader made no progress while data waited.",
	})
	m.sessionsClosed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_edge_client_sessions_closed_total", Help: "Client sessions the edge closed, by reason (revoked: a reload removed the credential or its rights; no_stream: no stream opened in time).",
	}, []string{"reason"})
	m.auditDrops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_edge_audit_records_dropped_total", Help: "Audit records never written, by reason (queue_full, write_error, closed).",
	}, []string{"reason"})
	m.auditBlocks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tether_edge_audit_records_blocked_total", Help: "Audit records whose write to the sink had not returned after the stuck threshold.",
	})
	m.auditStuckG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tether_edge_audit_sink_stuck", Help: "1 while a write to the audit sink is stuck, else 0.",
	})
	m.auditSuppress = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tether_edge_audit_records_suppressed_total", Help: "Refused-upgrade audit records left out by the audit rate limit.",
	})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.devices, m.clientSessions, m.streamsActive, m.streamsTotal, m.bytes, m.upgradeFails, m.stalled,
		m.sessionsClosed, m.auditDrops, m.auditBlocks, m.auditStuckG, m.auditSuppress,
	)
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	m.init()
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry, for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	m.init()
	return m.reg
}

func (m *Metrics) deviceDelta(d float64) {
	if m.on() {
		m.devices.Add(d)
	}
}

func (m *Metrics) clientDelta(d float64) {
	if m.on() {
		m.clientSessions.Add(d)
	}
}

func (m *Metrics) activeDelta(typ string, d float64) {
	if m.on() {
		m.streamsActive.WithLabelValues(typ).Add(d)
	}
}

func (m *Metrics) stream(typ, result string) {
	if m.on() {
		m.streamsTotal.WithLabelValues(typ, result).Inc()
	}
}

func (m *Metrics) addBytes(up, down int64) {
	if m.on() {
		m.bytes.WithLabelValues("up").Add(float64(up))
		m.bytes.WithLabelValues("down").Add(float64(down))
	}
}

func (m *Metrics) upgradeFailure(reason string) {
	if m.on() {
		m.upgradeFails.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) stalledReset() {
	if m.on() {
		m.stalled.Inc()
	}
}

func (m *Metrics) sessionClosed(reason string) {
	if m.on() {
		m.sessionsClosed.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) auditDropped(reason string, n int) {
	if m.on() {
		m.auditDrops.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *Metrics) auditBlocked(n int) {
	if m.on() {
		m.auditBlocks.Add(float64(n))
	}
}

func (m *Metrics) auditStuck(stuck bool) {
	if m.on() {
		v := 0.0
		if stuck {
			v = 1
		}
		m.auditStuckG.Set(v)
	}
}

func (m *Metrics) auditSuppressed() {
	if m.on() {
		m.auditSuppress.Inc()
	}
}

// presenceWrite counts one write of a device record to presence.
func (m *Metrics) presenceWrite(op string, err error) {
	if !m.on() {
		return
	}
	result := "ok"
	switch {
	case errors.Is(err, ErrRecordReplaced):
		result = "replaced"
	case err != nil:
		result = "error"
	}
	m.presenceWrites.WithLabelValues(op, result).Inc()
}

// ServedCertificate registers
// tether_edge_tls_certificate_expiry_timestamp_seconds: when the
// certificate the edge serves, as leaf returns it at each scrape, expires.
// The caller, which owns the listener's TLS configuration, calls it once.
func (m *Metrics) ServedCertificate(leaf func() *x509.Certificate) {
	if !m.on() {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_edge_tls_certificate_expiry_timestamp_seconds",
		Help: "When the TLS certificate the edge serves expires, in Unix seconds (the files are read again when they change)."},
		func() float64 {
			c := leaf()
			if c == nil {
				return math.NaN()
			}
			return float64(c.NotAfter.Unix())
		}))
}

// clusterGauges registers the cluster's health: whether the presence view
// is current, the live peer sessions, the cluster's devices, the age of
// the presence view in seconds, and when the peer certificate expires. It
// runs once, when a clustered edge starts.
func (m *Metrics) clusterGauges(healthy, peers, devices, age, peerCertExpiry func() float64) {
	if !m.on() {
		return
	}
	m.reg.MustRegister(m.presenceWrites,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_edge_cluster_healthy",
			Help: "1 while this edge's view of the cluster's presence is current (connected to NATS, watchers running), else 0."}, healthy),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_edge_cluster_peers_up",
			Help: "Live peer sessions with other edges."}, peers),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_edge_cluster_devices",
			Help: "Devices connected to any edge of the cluster, as this edge sees them."}, devices),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_edge_cluster_presence_age_seconds",
			Help: "Seconds since the presence view last heard from NATS (the echo of this edge's heartbeat, every 2 s)."}, age),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_edge_cluster_peer_certificate_expiry_timestamp_seconds",
			Help: "When the peer certificate this edge presents to the other edges expires, in Unix seconds."}, peerCertExpiry),
	)
}
