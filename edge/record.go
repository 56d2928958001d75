package edge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherhq/tether/internal/asciicast"
	"github.com/tetherhq/tether/transport/wire"
)

// Recording shells (docs/edge.md, "Recording"). The edge that holds the
// client's session records each PTY stream in asciicast v2, under
// Dir/YYYY/MM/DD/<device>/<recording ID>.cast. The recording starts in the
// open path (open), before the device sees the request, so that a
// required recording that cannot start refuses the shell; the relay
// (relay, bridgeWeb) then reads and writes the device's stream through a
// recStream, and the resizes and exit status that other PTY command
// streams carry are added as they pass the open path.

// EventRecordingDeleted records a recording the retention sweep deleted:
// the recording's ID, path and size, and why (Reason).
const EventRecordingDeleted = "recording_deleted"

// DefaultRecordingEdgeID names the edge in recording IDs when it has no
// ID of its own (a single edge without Server.EdgeID).
const DefaultRecordingEdgeID = "edge"

// The recording's bounds.
const (
	// recordCoalesce and recordChunk: output is written as one event per
	// 10 ms, or per 32 KiB when it comes faster.
	recordCoalesce = 10 * time.Millisecond
	recordChunk    = 32 << 10
	// recordQueueMax bounds the encoded events waiting for the disk; past
	// it a best_effort recording drops events (with a marker), and a
	// required one waits up to recordStallTimeout, then ends the shell.
	recordQueueMax = 256 << 10
	// recordFlushAt: this much queued wakes the writer at once.
	recordFlushAt = recordQueueMax / 2
	// recordIdleKeep: an idle recording keeps buffers up to this size.
	recordIdleKeep = 4 << 10
	// recordIdleTrim: a recording idle this long lets go of larger
	// buffers.
	recordIdleTrim     = time.Second
	recordStallTimeout = 5 * time.Second
	// recordExitWait bounds asking the device how the shell ended.
	recordExitWait = 5 * time.Second
	// recordCloseWait bounds the last writes of a recording.
	recordCloseWait = 10 * time.Second
	// recordingSweepEvery is the retention sweep's period.
	recordingSweepEvery = time.Minute
)

// RecordingAudit is what a PTY stream's audit records say about its
// recording: stream_open whether it is recorded and its ID; stream_close
// also the file's size and SHA-256 and whether it was truncated. A
// recording_deleted record carries the ID, path and size.
type RecordingAudit struct {
	Recorded bool          `json:"recorded"`
	Mode     RecordingMode `json:"mode,omitempty"`
	ID       string        `json:"id,omitempty"`
	// Path is the file, relative to the recording directory.
	Path      string `json:"path,omitempty"`
	Bytes     int64  `json:"bytes,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// Error is why the stream is not (or no longer entirely) recorded.
	Error string `json:"error,omitempty"`
}

// ValidRecordingMode reports whether m is a mode: off, best_effort,
// required, or empty (unset).
func ValidRecordingMode(m RecordingMode) bool {
	switch m {
	case "", RecordingOff, RecordingBestEffort, RecordingRequired:
		return true
	}
	return false
}

// SetRecording replaces the recording configuration; new shells take it,
// recordings under way keep theirs. Nil records nothing. The retention
// sweep starts with the first configuration that has a directory.
func (s *Server) SetRecording(c *RecordingConfig) {
	s.init()
	if c != nil {
		cp := *c
		c = &cp
	}
	s.rec.cfg.Store(c)
	s.startRecordings()
}

// recordings is the edge's recording state.
type recordings struct {
	cfg     atomic.Pointer[RecordingConfig]
	metrics *recMetrics
	// create opens a new recording file; tests wrap it to make writes
	// fail.
	create func(path string) (recFile, error)

	mu sync.Mutex
	// mu guards the following.
	live      map[string]*recorder // by device and PTY session ID
	files     map[string]bool      // open recordings: the sweep leaves them
	started   bool
	stopped   bool
	sweepNow  chan chan struct{} // asks the sweeper for a sweep, answered when done
	sweepStop chan struct{}
	sweepDone chan struct{}
}

// recFile is a recording's file.
type recFile interface {
	Write([]byte) (int, error)
	Truncate(int64) error
	Seek(int64, int) (int64, error)
	Close() error
}

func createRecordingFile(path string) (recFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// initRecordings takes Server.Recording; called once by init.
func (s *Server) initRecordings() {
	if s.Recording != nil {
		cp := *s.Recording
		s.rec.cfg.Store(&cp)
	}
	if s.rec.create == nil {
		s.rec.create = createRecordingFile
	}
	s.rec.metrics = newRecMetrics(s.Metrics)
	s.startRecordings()
}

// startRecordings starts the retention sweep, once, when a configuration
// with a directory is in force.
func (s *Server) startRecordings() {
	cfg := s.rec.cfg.Load()
	if cfg == nil || cfg.Dir == "" {
		return
	}
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	if s.rec.started || s.rec.stopped {
		return
	}
	s.rec.started = true
	s.rec.sweepNow = make(chan chan struct{})
	s.rec.sweepStop = make(chan struct{})
	s.rec.sweepDone = make(chan struct{})
	go s.sweeper(s.rec.sweepNow, s.rec.sweepStop, s.rec.sweepDone)
}

// stopRecordings stops the sweep; called by Close once the streams are
// gone.
func (s *Server) stopRecordings() {
	s.rec.mu.Lock()
	started, already := s.rec.started, s.rec.stopped
	s.rec.stopped = true
	s.rec.mu.Unlock()
	if started && !already {
		close(s.rec.sweepStop)
		<-s.rec.sweepDone
	}
}

// recordingEdgeID names this edge in recording IDs and file names.
func (s *Server) recordingEdgeID() string {
	switch {
	case s.Cluster != nil && s.Cluster.EdgeID != "":
		return s.Cluster.EdgeID
	case s.EdgeID != "":
		return s.EdgeID
	}
	return DefaultRecordingEdgeID
}

// recordingMode is the mode for id's shells on device: its roles' (or
// client rule's), else the edge's, else off.
func (s *Server) recordingMode(id Identity, device string) (RecordingMode, *RecordingConfig) {
	cfg := s.rec.cfg.Load()
	var mode RecordingMode
	if cfg != nil {
		mode = cfg.Mode
	}
	pol := s.auth.Load().policy
	if m := PolicyRecordingMode(pol, id, s.deviceRef(pol, device)); m != "" {
		mode = m
	}
	if mode == "" {
		mode = RecordingOff
	}
	return mode, cfg
}

// startRecording creates the recording of r's shell, when r is a PTY
// stream of a client of this edge and its mode records. A required
// recording that cannot start refuses the stream; a best_effort one lets
// it go on unrecorded. It fills r's audit record in.
func (s *Server) startRecording(r *openRequest) (*recorder, *refusal) {
	if r.hops > 0 || r.msg.Type != wire.MsgPTY {
		return nil, nil
	}
	mode, cfg := s.recordingMode(r.id, r.device)
	if mode == RecordingOff {
		if cfg != nil {
			r.ev.Recording = &RecordingAudit{Mode: mode}
		}
		return nil, nil
	}
	rec, err := s.newRecorder(r, mode, cfg)
	if err == nil {
		r.ev.Recording = &RecordingAudit{Recorded: true, Mode: mode, ID: rec.rid, Path: rec.rel}
		return rec, nil
	}
	s.rec.metrics.failed(mode, "start")
	r.ev.Recording = &RecordingAudit{Mode: mode, Error: err.Error()}
	if mode == RecordingRequired {
		s.log.Warn("shell refused: its recording cannot start", "client", r.id.Name, "device", r.device, "err", err)
		return nil, &refusal{result: "recording_unavailable",
			reason: fmt.Sprintf("this edge records every shell of client %s, and the recording cannot start: %v; ask the edge's operator to fix the recording directory", r.id.Name, err)}
	}
	s.log.Warn("shell not recorded: its recording cannot start (recording mode best_effort)", "client", r.id.Name, "device", r.device, "err", err)
	return nil, nil
}

// recordOpened finishes the open of r for the recording: a recording
// begins once the device answered, and is removed when it did not; a
// PTY command that the device accepted adds its resize or exit status to
// the recording of its session.
func (s *Server) recordOpened(r *openRequest, rec *recorder, o *opened, ref *refusal) (*opened, *refusal) {
	if rec != nil {
		if ref != nil {
			rec.discard()
			r.ev.Recording = nil
			return o, ref
		}
		if err := rec.begin(o.answer); err != nil {
			s.rec.metrics.failed(rec.mode, "start")
			r.ev.Recording = &RecordingAudit{Mode: rec.mode, Error: err.Error()}
			rec.discard()
			if rec.mode == RecordingRequired {
				o.st.Abort()
				o.release()
				return nil, &refusal{result: "recording_unavailable",
					reason: fmt.Sprintf("this edge records every shell of client %s, and the recording cannot start: %v; ask the edge's operator to fix the recording directory", r.id.Name, err)}
			}
			return o, nil
		}
		o.rec = rec
		return o, nil
	}
	if ref == nil && r.hops == 0 && r.msg.Type == wire.MsgPTYCommand {
		s.recordCommand(r.device, r.msg.Payload, o.answer)
	}
	return o, ref
}

// recordCommand adds what a PTY command the device accepted did to the
// recording of its session, if there is one.
func (s *Server) recordCommand(device string, payload, answer []byte) {
	c, err := wire.DecodePTYCommand(payload)
	if err != nil {
		return
	}
	s.rec.mu.Lock()
	rec := s.rec.live[device+"\x00"+c.SID]
	s.rec.mu.Unlock()
	if rec == nil {
		return
	}
	switch c.Type {
	case wire.PTYResize:
		rec.resize(c.Cols, c.Rows)
	case wire.PTYStatus:
		if st, err := wire.DecodeExitStatus(answer); err == nil && st.Exited {
			rec.noteExit(st)
		}
	}
}

// newRecorder creates the file of a new recording; the header follows
// in begin, once the device answered.
func (s *Server) newRecorder(r *openRequest, mode RecordingMode, cfg *RecordingConfig) (*recorder, error) {
	if cfg == nil || cfg.Dir == "" {
		return nil, errors.New("this edge has no recording directory (recording.dir)")
	}
	var cmd wire.PTYCommand
	if c, err := wire.DecodePTYCommand(r.msg.Payload); err == nil {
		cmd = c
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	now := time.Now()
	rid := s.recordingEdgeID() + "-" + hex.EncodeToString(rnd[:])
	rel := filepath.Join(now.UTC().Format("2006/01/02"), recordingDeviceDir(r.device), rid+".cast")
	path := filepath.Join(cfg.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create the recording directory: %w", err)
	}
	f, err := s.rec.create(path)
	if err != nil {
		return nil, fmt.Errorf("create the recording: %w", err)
	}
	rec := &recorder{s: s, id: r.id, device: r.device, mode: mode, input: cfg.Input, maxBytes: cfg.MaxBytesPerSession,
		rid: rid, rel: rel, path: path, f: f, cmd: cmd}
	s.rec.mu.Lock()
	if s.rec.files == nil {
		s.rec.files = make(map[string]bool)
	}
	s.rec.files[path] = true
	s.rec.mu.Unlock()
	s.rec.metrics.activeDelta(1)
	return rec, nil
}

// recordingDeviceDir is the directory name of a device's recordings: its
// ID, with the characters that are not safe in a path component
// percent-encoded. Device IDs (certs.ValidDeviceID) hold letters, digits
// and ".-_:", so in practice only leading dots are: "." and ".." would
// name other directories, and ".x" a hidden one.
func recordingDeviceDir(id string) string {
	var b strings.Builder
	lead := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		safe := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':' || c == '.' && !lead
		lead = lead && c == '.'
		if safe {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	if b.Len() == 0 {
		return "%00"
	}
	return b.String()
}

// recordRelay wraps the device's stream of a recorded shell for the
// relay; the context it returns ends the splice when a required
// recording fails.
func (s *Server) recordRelay(ctx context.Context, o *opened, dev io.ReadWriteCloser) (context.Context, io.ReadWriteCloser) {
	if o.rec == nil {
		return ctx, dev
	}
	ctx, cancel := context.WithCancelCause(ctx)
	o.rec.start(cancel)
	return ctx, &recStream{Stream: o.st, r: o.rec}
}

// recordWeb wraps the device's stream of a recorded web shell; stop ends
// the terminal when a required recording fails.
func (s *Server) recordWeb(o *opened, stop context.CancelCauseFunc) ptyStream {
	if o.rec == nil {
		return o.st
	}
	o.rec.start(stop)
	return &recStream{Stream: o.st, r: o.rec}
}

// finishRecording ends the recording of o's shell, if any, and adds the
// file's size and SHA-256 to the close record ev. It asks the device how
// the shell ended when no PTY command said so yet.
func (s *Server) finishRecording(o *opened, ev *Event) {
	rec := o.rec
	if rec == nil {
		return
	}
	o.rec = nil
	if ev.ExitCode != nil {
		rec.noteExit(wire.ExitStatus{Exited: true, Code: *ev.ExitCode, Signal: ev.Signal})
	}
	if !rec.exited() && rec.begun() {
		ctx, cancel := context.WithTimeout(s.ctx, recordExitWait)
		st := s.webExitStatus(ctx, rec.id, rec.device, rec.sid)
		cancel()
		if st.Exited {
			rec.noteExit(st)
		}
	}
	ev.Recording = rec.close()
}

// header is the recording's first line.
func (r *recorder) header() asciicast.Header {
	title := r.id.Name + "@" + r.device
	term := r.cmd.Term
	if term == "" {
		term = wire.DefaultPTYTerm
	}
	cols, rows := r.cmd.Cols, r.cmd.Rows
	if cols == 0 || rows == 0 {
		cols, rows = 80, 24 // what the device uses
	}
	command := strings.Join(append([]string{r.cmd.Command}, r.cmd.CommandArgs...), " ")
	return asciicast.Header{Width: cols, Height: rows, Timestamp: r.startWall.Unix(), Title: title,
		Command: strings.TrimSpace(command), Env: map[string]string{"TERM": term},
		Tether: &asciicast.Meta{ID: r.rid, Session: r.sid, Device: r.device, Client: r.id.Name,
			Edge: r.s.recordingEdgeID(), Command: strings.TrimSpace(command)}}
}

// encodeHeader encodes h as one line.
func encodeHeader(h asciicast.Header) ([]byte, error) {
	var b bytes.Buffer
	if _, err := asciicast.NewWriter(&b, h); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// recMetrics are the recording's metrics, registered on the edge's
// registry when it has one.
type recMetrics struct {
	errors  *prometheus.CounterVec
	active  prometheus.Gauge
	bytes   prometheus.Counter
	deleted *prometheus.CounterVec
}

func newRecMetrics(m *Metrics) *recMetrics {
	if m == nil {
		return nil
	}
	rm := &recMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_edge_recording_errors_total",
			Help: "Recording failures, by mode (best_effort, required) and stage (start: the recording could not start; write: a write failed; overflow: the disk did not keep up and events were dropped)."}, []string{"mode", "stage"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tether_edge_recordings_active", Help: "Shells being recorded now."}),
		bytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_edge_recording_bytes_total", Help: "Bytes written to recordings."}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_edge_recordings_deleted_total",
			Help: "Recordings the retention sweep deleted, by reason (retention, max_total_bytes)."}, []string{"reason"}),
	}
	reg := m.Registry()
	rm.errors = registerOr(reg, rm.errors)
	rm.active = registerOr(reg, rm.active)
	rm.bytes = registerOr(reg, rm.bytes)
	rm.deleted = registerOr(reg, rm.deleted)
	return rm
}

// registerOr registers c, or returns the collector already registered
// under its name (two edges may share one Metrics).
func registerOr[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *recMetrics) failed(mode RecordingMode, stage string) {
	if m != nil {
		m.errors.WithLabelValues(string(mode), stage).Inc()
	}
}

func (m *recMetrics) activeDelta(d float64) {
	if m != nil {
		m.active.Add(d)
	}
}

func (m *recMetrics) wrote(n int) {
	if m != nil {
		m.bytes.Add(float64(n))
	}
}

func (m *recMetrics) deletedOne(reason string) {
	if m != nil {
		m.deleted.WithLabelValues(reason).Inc()
	}
}
