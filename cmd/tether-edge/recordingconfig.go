package main

import (
	"fmt"
	"time"

	"github.com/tetherhq/tether/edge"
)

// recordingFileConfig is the recording: section: the shells this edge
// records (docs/edge.md, "Recording").
type recordingFileConfig struct {
	Mode               string        `yaml:"mode"`
	Dir                string        `yaml:"dir"`
	Input              bool          `yaml:"input"`
	MaxBytesPerSession int64         `yaml:"max_bytes_per_session"`
	Retention          time.Duration `yaml:"retention"`
	MaxTotalBytes      int64         `yaml:"max_total_bytes"`
}

// defaultRecordingDir is recording.dir when a mode records and no
// directory is given, relative to the config file.
const defaultRecordingDir = "recordings"

// parseRecordingMode checks a recording mode: off, best_effort, required,
// or empty.
func parseRecordingMode(s string) (edge.RecordingMode, error) {
	m := edge.RecordingMode(s)
	if !edge.ValidRecordingMode(m) {
		return "", fmt.Errorf("%q is not a recording mode: use off, best_effort or required", s)
	}
	return m, nil
}

// parseRecording checks the recording: section; it returns nil when the
// section is absent. dir is made absolute with rel.
func parseRecording(r *recordingFileConfig, bad func(string, ...string) error, rel func(string) string) (*edge.RecordingConfig, error) {
	if r == nil {
		return nil, nil
	}
	mode, err := parseRecordingMode(r.Mode)
	if err != nil {
		return nil, bad(err.Error(), "recording", "mode")
	}
	for _, n := range []struct {
		v   int64
		key string
	}{{r.MaxBytesPerSession, "max_bytes_per_session"}, {r.MaxTotalBytes, "max_total_bytes"}, {int64(r.Retention), "retention"}} {
		if n.v < 0 {
			return nil, bad("must not be negative (0 means no limit)", "recording", n.key)
		}
	}
	dir := r.Dir
	if dir == "" {
		dir = defaultRecordingDir
	}
	return &edge.RecordingConfig{Mode: mode, Dir: rel(dir), Input: r.Input, MaxBytesPerSession: r.MaxBytesPerSession,
		Retention: r.Retention, MaxTotalBytes: r.MaxTotalBytes}, nil
}
