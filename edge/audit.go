package edge

import (
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Audit event kinds.
const (
	EventDeviceConnect    = "device_connect"
	EventDeviceDisconnect = "device_disconnect"
	EventDeviceRejected   = "device_rejected"
	EventClientOpen       = "client_open"
	EventClientClose      = "client_close"
	EventClientRejected   = "client_rejected"
	EventStreamOpen       = "stream_open"
	EventStreamDeny       = "stream_deny"
	EventStreamClose      = "stream_close"
	EventDeviceStream     = "device_stream_refused"
)

// Event is one audit record. Empty fields are left out of the JSON line.
// Tokens never appear in an event.
type Event struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"event"`
	Device     string    `json:"device,omitempty"`
	Client     string    `json:"client,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Serial     string    `json:"serial,omitempty"`
	Type       string    `json:"type,omitempty"`
	Target     string    `json:"target,omitempty"`
	Result     string    `json:"result,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	// BytesUp is client to device, BytesDown device to client.
	BytesUp    int64 `json:"bytes_up,omitempty"`
	BytesDown  int64 `json:"bytes_down,omitempty"`
	DurationMS int64 `json:"duration_ms,omitempty"`
}

// Auditor records events. Audit must be safe for concurrent use and must
// not block for long: it runs on the connection paths.
type Auditor interface {
	Audit(Event)
}

// JSONAuditor writes one JSON object per line to W. A write error is logged
// once through Logger and the record is dropped; the edge keeps serving.
type JSONAuditor struct {
	W      io.Writer
	Logger *slog.Logger

	mu sync.Mutex
	// mu guards the following.
	failed bool
}

// NewJSONAuditor returns an auditor writing JSON lines to w. logger may be
// nil.
func NewJSONAuditor(w io.Writer, logger *slog.Logger) *JSONAuditor {
	return &JSONAuditor{W: w, Logger: logger}
}

// Audit writes e as one line.
func (a *JSONAuditor) Audit(e Event) {
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.W.Write(line); err != nil && !a.failed {
		a.failed = true
		if a.Logger != nil {
			a.Logger.Error("cannot write the audit log; records are being dropped", "err", err)
		}
	} else if err == nil {
		a.failed = false
	}
}

// MemoryAuditor keeps events in memory, for tests.
type MemoryAuditor struct {
	mu sync.Mutex
	// mu guards the following.
	events []Event
}

// Audit appends e.
func (a *MemoryAuditor) Audit(e Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

// Events returns a copy of the events so far.
func (a *MemoryAuditor) Events() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.events...)
}

type discardAuditor struct{}

func (discardAuditor) Audit(Event) {}
