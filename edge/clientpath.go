package edge

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tetherhq/tether/certs"
)

// The client endpoints. Tether's own clients dial /client/<device ID>;
// qbee-v1 clients dial /device/<device ID>, optionally under a prefix that
// names an edge, /edge/<edge ID>/device/<device ID>. /device itself, with
// nothing after it, is the devices' endpoint.
const (
	clientPrefix   = "/client/"
	qbeeDevicePath = "/device/"
	qbeeEdgePrefix = "/edge/"
)

// clientPath is a client endpoint, parsed.
type clientPath struct {
	// device is the device ID, unescaped and checked
	// (certs.ValidDeviceID).
	device string
	// edge is the edge the path names (/edge/<edge ID>/...); empty when it
	// names none.
	edge string
	// qbee: the path is /device/<id>, with or without the /edge/ prefix,
	// rather than /client/<id>.
	qbee bool
}

// parseClientPath parses the escaped path of a client endpoint:
// /client/<id>, /device/<id> or /edge/<edge ID>/device/<id>. The device ID
// is canonicalized the same way on all three (unescaped once, then
// certs.ValidDeviceID). ok is false for a path that is none of them; err
// is set for one that is, but whose IDs are bad, and says what to send.
func parseClientPath(escaped string) (p clientPath, ok bool, err error) {
	var rawEdge, rawDevice string
	switch {
	case strings.HasPrefix(escaped, clientPrefix):
		rawDevice = escaped[len(clientPrefix):]
	case strings.HasPrefix(escaped, qbeeDevicePath):
		p.qbee = true
		rawDevice = escaped[len(qbeeDevicePath):]
	case strings.HasPrefix(escaped, qbeeEdgePrefix):
		p.qbee = true
		rest := escaped[len(qbeeEdgePrefix):]
		var found bool
		rawEdge, rawDevice, found = strings.Cut(rest, qbeeDevicePath)
		if !found {
			return p, false, nil
		}
		edge, uerr := url.PathUnescape(rawEdge)
		if uerr != nil || certs.ValidDeviceID(edge) != nil { // edge IDs take the device IDs' form
			return p, true, errors.New("invalid edge ID in the path: use /edge/{edgeID}/device/{deviceID}, or /device/{deviceID} on any edge")
		}
		p.edge = edge
	default:
		return p, false, nil
	}
	want := "/client/{deviceID}"
	if p.qbee {
		want = "/device/{deviceID}"
	}
	dev, uerr := url.PathUnescape(rawDevice)
	if uerr != nil || certs.ValidDeviceID(dev) != nil {
		return p, true, fmt.Errorf("invalid device ID in the path: use %s", want)
	}
	p.device = dev
	return p, true, nil
}

// clientToken returns the token of a client's Authorization header, which
// takes two forms: "Bearer <token>" (any case of "Bearer"), and the bare
// token, as qbee-v1 clients send it. problem is set, and the token empty,
// when the header is missing or is neither form; it says what to send.
func clientToken(h string) (token, problem string) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", "missing token: send \"Authorization: Bearer <token>\" (or the bare token); the tether CLI takes --token or --token-file"
	}
	scheme, rest, spaced := strings.Cut(h, " ")
	if !spaced {
		if strings.EqualFold(h, "Bearer") {
			return "", "missing token after \"Bearer\": send \"Authorization: Bearer <token>\""
		}
		if !tokenChars(h) {
			return "", "malformed Authorization header: the token has control characters; send \"Bearer <token>\" or the bare token"
		}
		return h, ""
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Sprintf("unsupported Authorization scheme %q: send \"Bearer <token>\" or the bare token", truncate(scheme, 32))
	}
	tok := strings.TrimSpace(rest)
	if tok == "" || strings.ContainsAny(tok, " \t") || !tokenChars(tok) {
		return "", "malformed Authorization header: send \"Bearer <token>\" with one token and no spaces in it"
	}
	return tok, ""
}

// tokenChars reports whether s is printable ASCII without spaces.
func tokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// knownEdge reports whether id names this edge or a live edge of its
// cluster, for the /edge/<edge ID>/ prefix. Which edge of a cluster the
// client named does not matter: every edge reaches every device. While
// the cluster state is unavailable the edges cannot be listed, so any ID
// passes, and the device's lookup then answers as it can.
func (s *Server) knownEdge(id string) bool {
	if s.Cluster == nil {
		return s.EdgeID != "" && id == s.EdgeID
	}
	if id == s.Cluster.EdgeID || s.Cluster.Presence.Health() != nil {
		return true
	}
	for _, e := range s.Cluster.Presence.Edges() {
		if e.ID == id {
			return true
		}
	}
	return false
}

// unknownEdgeText is the 404 text of an /edge/<edge ID>/ prefix that names
// no edge known here.
func (s *Server) unknownEdgeText(id string) string {
	if s.Cluster == nil && s.EdgeID == "" {
		return fmt.Sprintf("unknown edge %q: this edge has no edge ID; dial /device/{deviceID} without the /edge/ prefix", id)
	}
	if s.Cluster == nil {
		return fmt.Sprintf("unknown edge %q: this edge is %s; dial /edge/%s/device/{deviceID}, or /device/{deviceID}", id, s.EdgeID, s.EdgeID)
	}
	return fmt.Sprintf("unknown edge %q: no live edge of this cluster has that ID; dial /device/{deviceID}, which reaches every device from any edge", id)
}

// hasDeviceCert reports whether r presented a client certificate.
func hasDeviceCert(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.PeerCertificates) > 0
}
