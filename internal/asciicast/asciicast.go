// Package asciicast holds the asciicast v2 format that the edge records
// shells in and that `tether play` and the browser player read: a header
// object on the first line, then one event per line, each a JSON array
// [time, code, data] (https://docs.asciinema.org/manual/asciicast/v2/).
//
// Tether's own fields ride in the header under "tether", which asciinema's
// tools ignore.
package asciicast

// Version is the asciicast version this package reads and writes.
const Version = 2

// Header is a recording's first line.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"` // Unix seconds at the start
	Duration  float64           `json:"duration,omitempty"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title,omitempty"` // "client@device"
	Env       map[string]string `json:"env,omitempty"`   // TERM
	Tether    *Meta             `json:"tether,omitempty"`
}

// Meta is what Tether adds to the header: who recorded what, where.
type Meta struct {
	ID      string `json:"id"`      // the recording's ID: "<edge>-<16 hex digits>"
	Session string `json:"session"` // the stream's audit session ID
	Device  string `json:"device"`
	Client  string `json:"client"`
	Edge    string `json:"edge"`
	Command string `json:"command,omitempty"`
}

// Code is an event's kind.
type Code string

// The event codes of asciicast v2.
const (
	Output Code = "o" // data: what the device wrote, as UTF-8
	Input  Code = "i" // data: what the user typed (only when configured)
	Resize Code = "r" // data: "COLSxROWS"
	Marker Code = "m" // data: a note: exit status, truncation, recording errors
)

// Event is one line after the header. Time is seconds since the start.
type Event struct {
	Time float64
	Code Code
	Data string
}
