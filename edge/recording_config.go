package edge

import "time"

// RecordingMode says whether the edge records a client's shells.
type RecordingMode string

// The recording modes. The zero value is unset: an edge without a mode
// records nothing, and a client rule without one takes the edge's.
const (
	// RecordingOff records nothing.
	RecordingOff RecordingMode = "off"
	// RecordingBestEffort records, and lets a shell go on when the
	// recording cannot start or fails; a marker and a metric say so.
	RecordingBestEffort RecordingMode = "best_effort"
	// RecordingRequired refuses a shell whose recording cannot start, and
	// ends one whose recording fails, with the reason.
	RecordingRequired RecordingMode = "required"
)

// RecordingConfig is where and how the edge records shells (PTY and PTY
// command streams) in asciicast v2, at the edge that holds the client's
// session.
type RecordingConfig struct {
	// Mode is the edge's default; a client rule may set its own.
	Mode RecordingMode
	// Dir is the directory under which recordings live, as
	// YYYY/MM/DD/<device>/<edge>-<id>.cast.
	Dir string
	// Input records what users type ("i" events) as well. Off by
	// default: it captures passwords typed at prompts.
	Input bool
	// MaxBytesPerSession truncates a recording past this many bytes, with
	// a marker; zero means no limit.
	MaxBytesPerSession int64
	// Retention deletes recordings older than this; zero keeps them.
	Retention time.Duration
	// MaxTotalBytes deletes the oldest recordings while the directory
	// holds more; zero means no limit.
	MaxTotalBytes int64
}
