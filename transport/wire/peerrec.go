package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// PeerRecordings is the payload of MsgPeerRecordings: an edge asks another
// edge of its cluster, for one of its clients, for the recordings that
// edge holds (Op "list") or for one recording's file (Op "fetch").
//
//	{"op":"list","via":"edge-1","client":"ops","device":"gw-17","since":1764662400,"limit":100}
//	{"op":"fetch","via":"edge-1","client":"ops","id":"edge-2-0123456789abcdef"}
//
// The answer is an Error with a reason, or OK followed by the body, after
// which the answering edge closes the stream: for a list, a JSON array of
// recordings (at most MaxPeerRecordingList bytes); for a fetch, the OK's
// payload is the file's size in bytes as decimal digits, and exactly that
// many bytes of the file follow.
type PeerRecordings struct {
	// Op is PeerRecordingsList or PeerRecordingsFetch.
	Op string `json:"op"`
	// Via is the ID of the asking edge.
	Via string `json:"via"`
	// Client names the authenticated client the edge asks for, as the
	// policy knows it: the answering edge checks its rights again.
	Client string `json:"client"`
	// ID is the recording a fetch asks for.
	ID string `json:"id,omitempty"`
	// Device and Of keep, in a list, the recordings of one device and of
	// one client; empty keeps all.
	Device string `json:"device,omitempty"`
	Of     string `json:"of,omitempty"`
	// Since keeps, in a list, the recordings that started at or after
	// this Unix time in seconds; zero keeps all.
	Since int64 `json:"since,omitempty"`
	// Limit is the most recordings a list returns, newest first.
	Limit int `json:"limit,omitempty"`
}

// The operations of PeerRecordings.
const (
	PeerRecordingsList  = "list"
	PeerRecordingsFetch = "fetch"
)

// Limits of PeerRecordings and its answers.
const (
	// MaxPeerRecordingsLimit bounds PeerRecordings.Limit.
	MaxPeerRecordingsLimit = 1000
	// MaxPeerRecordingList bounds a list answer's body.
	MaxPeerRecordingList = 4 << 20
)

// ErrInvalidPeerRecordings: a PeerRecordings payload is malformed or out
// of range.
var ErrInvalidPeerRecordings = errors.New("wire: invalid peer recordings request")

// recordingID is a recording's ID: the ID of the edge that recorded it
// (letters, digits, '.', '-', '_' and ':', 1 to 128 of them), '-', then
// 16 lowercase hex digits.
var recordingID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}-[0-9a-f]{16}$`)

// ValidRecordingID reports whether id has the form of a recording's ID,
// "<edge ID>-<16 lowercase hex digits>".
func ValidRecordingID(id string) bool { return recordingID.MatchString(id) }

// Validate checks the fields' presence and lengths.
func (p PeerRecordings) Validate() error {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrInvalidPeerRecordings, what) }
	switch {
	case p.Via == "" || len(p.Via) > maxPeerName:
		return bad(fmt.Sprintf("via must be 1 to %d bytes", maxPeerName))
	case p.Client == "" || len(p.Client) > maxPeerName:
		return bad(fmt.Sprintf("client must be 1 to %d bytes", maxPeerName))
	case len(p.Device) > maxPeerName || len(p.Of) > maxPeerName:
		return bad(fmt.Sprintf("device and of must be at most %d bytes", maxPeerName))
	case p.Since < 0 || p.Limit < 0 || p.Limit > MaxPeerRecordingsLimit:
		return bad(fmt.Sprintf("since must not be negative, limit 0 to %d", MaxPeerRecordingsLimit))
	}
	switch p.Op {
	case PeerRecordingsList:
		if p.ID != "" {
			return bad("a list names no id")
		}
	case PeerRecordingsFetch:
		if !ValidRecordingID(p.ID) {
			return bad("a fetch names a recording id: <edge>-<16 hex digits>")
		}
	default:
		return bad(fmt.Sprintf("op %q: want list or fetch", truncateReason(p.Op)))
	}
	return nil
}

// Encode returns the payload's JSON.
func (p PeerRecordings) Encode() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// DecodePeerRecordings parses and validates a PeerRecordings payload.
func DecodePeerRecordings(b []byte) (PeerRecordings, error) {
	var p PeerRecordings
	if len(b) > MaxPayload {
		return p, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(b))
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return PeerRecordings{}, fmt.Errorf("%w: %v", ErrInvalidPeerRecordings, err)
	}
	if err := p.Validate(); err != nil {
		return PeerRecordings{}, err
	}
	return p, nil
}
