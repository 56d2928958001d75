package wire

import (
	"encoding/json"
	"errors"
	"fmt"
)

// PeerOpen is the payload of MsgPeerOpen: an edge carrying a client's
// stream to the edge that holds the device. The client's opening message
// follows on the stream, framed as usual, and the answer (OK or Error from
// the device or the device's edge, or GoAway: "not here, look again") comes
// back as usual.
//
//	{"device":"gw-17","client":"ops","remote":"192.0.2.7:51234","via":"edge-1","hops":1}
type PeerOpen struct {
	// Device is the device the stream is for.
	Device string `json:"device"`
	// Client names the authenticated client, as the policy knows it.
	Client string `json:"client"`
	// Remote is the client's address as its edge saw it, for the audit.
	Remote string `json:"remote,omitempty"`
	// Via is the ID of the edge the client is connected to.
	Via string `json:"via"`
	// Hops counts the edges the stream has crossed; an edge never sends a
	// stream on that already crossed one.
	Hops int `json:"hops"`
	// Method is how the client proved who it is ("oidc", "jwt"; empty
	// for a token), and Groups the groups its credential carries: the
	// device's edge authorizes the same identity as the client's edge.
	Method string   `json:"method,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// ErrInvalidPeerOpen: a PeerOpen payload is malformed or out of range.
var ErrInvalidPeerOpen = errors.New("wire: invalid peer open")

// Limits of PeerOpen fields.
const (
	maxPeerName = 256
	// MaxPeerHops is the most edges a stream may cross.
	MaxPeerHops   = 1
	maxPeerMethod = 16
	maxPeerGroups = 64
)

// Validate checks the fields' presence and lengths.
func (p PeerOpen) Validate() error {
	switch {
	case p.Device == "" || len(p.Device) > maxPeerName:
		return fmt.Errorf("%w: device must be 1 to %d bytes", ErrInvalidPeerOpen, maxPeerName)
	case p.Client == "" || len(p.Client) > maxPeerName:
		return fmt.Errorf("%w: client must be 1 to %d bytes", ErrInvalidPeerOpen, maxPeerName)
	case p.Via == "" || len(p.Via) > maxPeerName || len(p.Remote) > maxPeerName:
		return fmt.Errorf("%w: via must be 1 to %d bytes, remote at most that", ErrInvalidPeerOpen, maxPeerName)
	case p.Hops < 1 || p.Hops > MaxPeerHops:
		return fmt.Errorf("%w: %d hops; at most %d", ErrInvalidPeerOpen, p.Hops, MaxPeerHops)
	case len(p.Method) > maxPeerMethod || len(p.Groups) > maxPeerGroups:
		return fmt.Errorf("%w: method at most %d bytes, at most %d groups", ErrInvalidPeerOpen, maxPeerMethod, maxPeerGroups)
	}
	for _, g := range p.Groups {
		if g == "" || len(g) > maxPeerName {
			return fmt.Errorf("%w: a group must be 1 to %d bytes", ErrInvalidPeerOpen, maxPeerName)
		}
	}
	return nil
}

// Encode returns the payload's JSON.
func (p PeerOpen) Encode() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// DecodePeerOpen parses and validates a PeerOpen payload.
func DecodePeerOpen(b []byte) (PeerOpen, error) {
	var p PeerOpen
	if len(b) > MaxPayload {
		return p, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(b))
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return PeerOpen{}, fmt.Errorf("%w: %v", ErrInvalidPeerOpen, err)
	}
	if err := p.Validate(); err != nil {
		return PeerOpen{}, err
	}
	if len(p.Groups) == 0 {
		p.Groups = nil // "groups":[] is no groups
	}
	return p, nil
}
