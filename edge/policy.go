package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// Identity is an authenticated client.
type Identity struct {
	// Name is the client's name from the policy; it appears in audit
	// records and denials. It is never the token.
	Name string
	// Method is how the client proved who it is: "token" for a static
	// bearer token, "oidc" for a user certificate signed after an SSO
	// login, "jwt" for a bearer JWT from a configured issuer. Empty means
	// "token".
	Method string
	// Groups are the groups the identity provider vouches for, which
	// roles match; none for a token.
	Groups []string
}

// Request is what a client asks of a device on one stream, after the edge
// canonicalized it.
type Request struct {
	Type wire.MsgType
	// Target is the canonical destination of a TCP or UDP stream; zero for
	// other types.
	Target target.Target
	// File is a file transfer's direction and absolute, canonical path;
	// nil for other types.
	File *wire.FileRequest
}

// Policy decides who may do what. Implementations must be safe for
// concurrent use; the edge swaps a whole Policy on Reload rather than
// mutating one.
//
// Every method denies by default: an unknown token, a device that matches
// no glob, and a stream type that is not granted are all refused.
type Policy interface {
	// Authenticate maps a bearer token to an identity. ok is false for an
	// unknown token. Implementations compare in constant time.
	Authenticate(token string) (id Identity, ok bool)
	// DeviceAllowed reports whether id may reach deviceID at all.
	DeviceAllowed(id Identity, deviceID string) bool
	// Authorize returns nil when id may open req on deviceID, else an
	// error whose text says what was refused.
	Authorize(id Identity, deviceID string, req Request) error
}

// HashAuthenticator is a Policy that can authenticate by the SHA-256 of a
// token (HashToken). The edge keeps that hash, never the token, for each
// client session, and on Reload checks with it that the credential still
// belongs to the same client; a session whose credential the new policy
// does not know is closed. With a Policy that lacks it, Reload closes every
// client session, since none can be re-checked. StaticPolicy and AllowAll
// implement it.
type HashAuthenticator interface {
	AuthenticateHash(sum [sha256.Size]byte) (id Identity, ok bool)
}

// ErrNotAllowed is wrapped by every denial of Authorize.
var ErrNotAllowed = errors.New("not allowed")

// ClientRule is one client of a StaticPolicy.
type ClientRule struct {
	// Name identifies the client in audit records and denials.
	Name string
	// TokenSHA256 is the SHA-256 of the client's bearer token. All zero:
	// the rule has no token and applies to the person or automation of
	// that name, proven by a user certificate or a JWT (IdentityAdmitter).
	TokenSHA256 [sha256.Size]byte
	// Devices are globs on device IDs: '*' matches any run of characters,
	// '.' and ':' included (target.MatchGlob).
	Devices []string
	// TCP and UDP are the targets the client may reach.
	TCP, UDP []target.Pattern
	// PTY allows shells and commands (PTY and PTY command streams).
	PTY bool
	// Reload allows asking the device to reload its configuration.
	Reload bool
	// Files allows file transfer streams: any path the device's own
	// policy admits, unless FileRules narrows them.
	Files bool
	// Exec allows commands without a terminal (exec streams).
	Exec bool
	// ExtraTypes are stream types Tether does not define that the edge
	// relays for this client: the opening message and the device's answer
	// pass unchanged. Each must pass ValidExtraType. None by default.
	ExtraTypes []wire.MsgType
	// Recording, when not empty, overrides the edge's recording mode for
	// this client's shells.
	Recording RecordingMode
	// Recordings allows listing and reading the recordings of the devices
	// the client may reach ("recordings: read").
	Recordings bool
	// FileRules, when not nil, admits a download only beneath a Read glob
	// and an upload only beneath a Write glob, on the canonical absolute
	// path (wire.MatchFilePath).
	FileRules *FileRules
}

// FileRules are the paths a client may transfer: absolute globs in
// path.Match syntax ('*' does not cross '/'); a path matches when it or one
// of its parent directories does. Empty admits nothing.
type FileRules struct {
	Read, Write []string
}

// ParseTokenSHA256 decodes a 64-character hex SHA-256.
func ParseTokenSHA256(s string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	if len(s) != 2*sha256.Size {
		return out, fmt.Errorf("token_sha256 must be %d hex characters, got %d; make one with `tether-edge token`", 2*sha256.Size, len(s))
	}
	if _, err := hex.Decode(out[:], []byte(s)); err != nil {
		return out, fmt.Errorf("token_sha256 is not hex: %v", err)
	}
	return out, nil
}

// HashToken returns the SHA-256 of a bearer token, the form policies store.
func HashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// StaticPolicy is a fixed list of clients, as read from the edge's
// configuration. The zero value denies everything.
type StaticPolicy struct {
	clients []ClientRule
}

// NewStaticPolicy returns a policy for rules. Names must be unique and
// non-empty, and no two clients may share a token.
func NewStaticPolicy(rules []ClientRule) (*StaticPolicy, error) {
	names := make(map[string]bool)
	hashes := make(map[[sha256.Size]byte]string)
	for i, r := range rules {
		if r.Name == "" {
			return nil, fmt.Errorf("client %d has no name", i+1)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("client name %q is used twice", r.Name)
		}
		names[r.Name] = true
		if other, dup := hashes[r.TokenSHA256]; dup && r.TokenSHA256 != [sha256.Size]byte{} {
			return nil, fmt.Errorf("clients %q and %q have the same token_sha256; give each client its own token", other, r.Name)
		}
		hashes[r.TokenSHA256] = r.Name
		for _, g := range r.Devices {
			if err := validDeviceGlob(g); err != nil {
				return nil, fmt.Errorf("client %q: %v", r.Name, err)
			}
		}
		for _, t := range r.ExtraTypes {
			if err := ValidExtraType(t); err != nil {
				return nil, fmt.Errorf("client %q: %w", r.Name, err)
			}
		}
		if fr := r.FileRules; fr != nil {
			if err := wire.CheckFileGlobs(append(append([]string(nil), fr.Read...), fr.Write...)); err != nil {
				return nil, fmt.Errorf("client %q: files: %v", r.Name, err)
			}
		}
	}
	return &StaticPolicy{clients: append([]ClientRule(nil), rules...)}, nil
}

// Authenticate hashes token and compares it with every client's hash in
// constant time, without stopping at the first match.
func (p *StaticPolicy) Authenticate(token string) (Identity, bool) {
	if token == "" {
		return Identity{}, false
	}
	return p.AuthenticateHash(HashToken(token))
}

// AuthenticateHash is Authenticate for a token's SHA-256, in constant time
// as well.
func (p *StaticPolicy) AuthenticateHash(sum [sha256.Size]byte) (Identity, bool) {
	if p == nil {
		return Identity{}, false
	}
	found := -1
	for i := range p.clients {
		if subtle.ConstantTimeCompare(sum[:], p.clients[i].TokenSHA256[:]) == 1 && ruleMatches(&p.clients[i], Identity{}) {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, false
	}
	return Identity{Name: p.clients[found].Name}, true
}

func (p *StaticPolicy) rule(id Identity) *ClientRule {
	if p == nil {
		return nil
	}
	for i := range p.clients {
		if p.clients[i].Name == id.Name && ruleMatches(&p.clients[i], id) {
			return &p.clients[i]
		}
	}
	return nil
}

// DeviceAllowed reports whether one of the client's device globs matches.
func (p *StaticPolicy) DeviceAllowed(id Identity, deviceID string) bool {
	r := p.rule(id)
	if r == nil {
		return false
	}
	for _, g := range r.Devices {
		if target.MatchGlob(g, deviceID) {
			return true
		}
	}
	return false
}

// Authorize checks the device and the stream type, and for TCP and UDP the
// canonical target against the client's patterns.
func (p *StaticPolicy) Authorize(id Identity, deviceID string, req Request) error {
	r := p.rule(id)
	if r == nil || !p.DeviceAllowed(id, deviceID) {
		return denial(id, deviceID, req)
	}
	var ok bool
	switch req.Type {
	case wire.MsgTCP:
		ok = matchAny(r.TCP, req.Target)
	case wire.MsgUDP:
		ok = matchAny(r.UDP, req.Target)
	case wire.MsgPTY, wire.MsgPTYCommand:
		ok = r.PTY
	case wire.MsgReload:
		ok = r.Reload
	case wire.MsgFileTransfer:
		ok = r.Files && allowFile(r.FileRules, req.File)
	case wire.MsgExec:
		ok = r.Exec
	default:
		ok = extraTypeAllowed(r, req.Type)
	}
	if !ok {
		return denial(id, deviceID, req)
	}
	return nil
}

// allowFile checks a file transfer against the client's rules; nil rules
// leave the decision to the device.
func allowFile(fr *FileRules, f *wire.FileRequest) bool {
	if fr == nil {
		return true
	}
	if f == nil {
		return false
	}
	globs := fr.Read
	if f.Direction == 1 {
		globs = fr.Write
	}
	_, ok := wire.MatchFilePath(globs, f.Path)
	return ok
}

func matchAny(ps []target.Pattern, t target.Target) bool {
	for _, p := range ps {
		if p.Match(t) {
			return true
		}
	}
	return false
}

// denial builds the refusal text, e.g.
// "not allowed: tcp 10.0.0.5:25 on device d1 for client ops".
func denial(id Identity, deviceID string, req Request) error {
	what := typeWord(req.Type)
	if req.Target.Host != "" {
		what += " " + req.Target.String()
	}
	if relayable(req.Type) {
		return fmt.Errorf("%w: stream type 0x%02x on device %s for client %s; this edge relays a type it does not define only when the client's allow.extra_types lists it",
			ErrNotAllowed, uint8(req.Type), deviceID, id.Name)
	}
	if f := req.File; f != nil {
		what += " " + fileDirection(f.Direction) + " " + f.Path
	}
	return fmt.Errorf("%w: %s on device %s for client %s", ErrNotAllowed, what, deviceID, id.Name)
}

// Tether's extension range of message types (docs/protocol.md): the edge
// never relays a type of it that it does not define.
const (
	extFirst wire.MsgType = 0x70
	extLast  wire.MsgType = 0x7f
)

// relayable reports whether t is a stream type the edge may relay
// unchanged when a policy allows it: one that Tether does not define,
// outside Tether's extension range 0x70..0x7f.
func relayable(t wire.MsgType) bool {
	return !t.Known() && (t < extFirst || t > extLast)
}

// ValidExtraType returns nil when t may be listed in
// ClientRule.ExtraTypes, and otherwise an error that says why not and
// what to use instead.
func ValidExtraType(t wire.MsgType) error {
	switch {
	case t == wire.MsgOK || t == wire.MsgError || t == wire.MsgGoAway:
		return fmt.Errorf("extra type 0x%02x is %v, a control message of the protocol, not a stream type", uint8(t), t)
	case t.Known():
		return fmt.Errorf("extra type 0x%02x is %v, a type Tether defines: allow it with its own rule (%s), not as an extra type", uint8(t), t, ruleOf(t))
	case t >= extFirst && t <= extLast:
		return fmt.Errorf("extra type 0x%02x is in Tether's extension range 0x70..0x7f, which the edge never relays", uint8(t))
	}
	return nil
}

// ruleOf names the allow rule of a type Tether defines.
func ruleOf(t wire.MsgType) string {
	switch t {
	case wire.MsgTCP:
		return "allow.tcp"
	case wire.MsgUDP:
		return "allow.udp"
	case wire.MsgPTY, wire.MsgPTYCommand:
		return "allow.pty"
	case wire.MsgReload:
		return "allow.reload"
	case wire.MsgFileTransfer:
		return "allow.files"
	case wire.MsgExec:
		return "allow.exec"
	}
	return "none: clients may not open it"
}

// extraTypeAllowed reports whether r lists t in its extra types.
func extraTypeAllowed(r *ClientRule, t wire.MsgType) bool {
	if !relayable(t) {
		return false
	}
	for _, x := range r.ExtraTypes {
		if x == t {
			return true
		}
	}
	return false
}

// typeWord names a stream type the way policies spell it.
func typeWord(t wire.MsgType) string {
	switch t {
	case wire.MsgTCP:
		return "tcp"
	case wire.MsgUDP:
		return "udp"
	case wire.MsgPTY:
		return "pty"
	case wire.MsgPTYCommand:
		return "pty-command"
	case wire.MsgReload:
		return "reload"
	case wire.MsgFileTransfer:
		return "file-transfer"
	case wire.MsgExec:
		return "exec"
	}
	return "type-0x" + strconv.FormatUint(uint64(t), 16)
}

// fileDirection names a file transfer's direction.
func fileDirection(d int) string {
	if d == 1 {
		return "upload"
	}
	return "download"
}

// AllowAll is a policy that lets every non-empty token do everything on
// every device, relayed types (relayable) included. The identity's name
// is "any". For tests only.
type AllowAll struct{}

// Authenticate accepts any non-empty token.
func (AllowAll) Authenticate(token string) (Identity, bool) {
	return Identity{Name: "any"}, token != ""
}

// AuthenticateHash accepts any hash.
func (AllowAll) AuthenticateHash([sha256.Size]byte) (Identity, bool) {
	return Identity{Name: "any"}, true
}

// DeviceAllowed always allows.
func (AllowAll) DeviceAllowed(Identity, string) bool { return true }

// Authorize always allows.
func (AllowAll) Authorize(Identity, string, Request) error { return nil }

// denyAll is the policy of a Server without one.
type denyAll struct{}

func (denyAll) Authenticate(string) (Identity, bool) { return Identity{}, false }
func (denyAll) AuthenticateHash([sha256.Size]byte) (Identity, bool) {
	return Identity{}, false
}
func (denyAll) DeviceAllowed(Identity, string) bool              { return false }
func (denyAll) Authorize(id Identity, d string, r Request) error { return denial(id, d, r) }

func validDeviceGlob(g string) error {
	if g == "" {
		return errors.New("empty device glob")
	}
	for _, c := range g {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '*'
		if !ok {
			return fmt.Errorf("device glob %q may contain only letters, digits, '.', '-', '_', ':' and '*'", g)
		}
	}
	return nil
}
