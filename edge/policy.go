package edge

import (
	"crypto/sha256"
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
	// DeviceAllowed reports whether id may reach dev at all.
	DeviceAllowed(id Identity, dev DeviceRef) bool
	// Authorize returns nil when id may open req on dev, else an error
	// whose text says what was refused.
	Authorize(id Identity, dev DeviceRef, req Request) error
}

// The optional abilities of a Policy, which RolePolicy and StaticPolicy
// have; the edge does without them for a Policy that lacks them.
type (
	// deviceDenier says why an identity may not reach a device.
	deviceDenier interface {
		DeviceDenial(id Identity, dev DeviceRef) string
	}
	// grantNamer names the role that allowed a request, for the audit.
	grantNamer interface {
		GrantingRole(id Identity, dev DeviceRef, req Request) string
	}
	// deviceLabeler adds the labels of the edge's labels file.
	deviceLabeler interface {
		LabelDevice(dev DeviceRef) DeviceRef
	}
)

// RecordingPolicy is a Policy that sets, per identity and device, the
// recording mode of shells and the right to read recordings. RolePolicy
// and StaticPolicy implement it (from Allow.Recording and
// Allow.Recordings, or a client rule's Recording and Recordings).
type RecordingPolicy interface {
	// RecordingMode is the mode for id's shells on dev; "" keeps the
	// edge's.
	RecordingMode(id Identity, dev DeviceRef) RecordingMode
	// RecordingsAllowedOn reports whether id may list and read dev's
	// recordings.
	RecordingsAllowedOn(id Identity, dev DeviceRef) bool
}

// PolicyRecordingMode is p's recording mode for id's shells on dev: ""
// (the edge's mode) for a Policy that is not a RecordingPolicy.
func PolicyRecordingMode(p Policy, id Identity, dev DeviceRef) RecordingMode {
	if rp, ok := p.(RecordingPolicy); ok {
		return rp.RecordingMode(id, dev)
	}
	return ""
}

// PolicyRecordingsAllowed reports whether p lets id read dev's
// recordings: false for a Policy that is not a RecordingPolicy, but
// AllowAll.
func PolicyRecordingsAllowed(p Policy, id Identity, dev DeviceRef) bool {
	if rp, ok := p.(RecordingPolicy); ok {
		return rp.RecordingsAllowedOn(id, dev)
	}
	_, all := p.(AllowAll)
	return all
}

// deviceDenial is why p refuses id the device dev.
func deviceDenial(p Policy, id Identity, dev DeviceRef) string {
	if d, ok := p.(deviceDenier); ok {
		return d.DeviceDenial(id, dev)
	}
	return fmt.Sprintf("client %s may not reach device %s", id.Name, dev.ID)
}

// grantingRole names the role of p that allowed req, or "".
func grantingRole(p Policy, id Identity, dev DeviceRef, req Request) string {
	if g, ok := p.(grantNamer); ok {
		return g.GrantingRole(id, dev, req)
	}
	return ""
}

// LabelDevice returns dev with the labels p's labels file gives it on top
// of its own; dev unchanged for a Policy without a labels file.
func LabelDevice(p Policy, dev DeviceRef) DeviceRef {
	if l, ok := p.(deviceLabeler); ok {
		return l.LabelDevice(dev)
	}
	return dev
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

// StaticPolicy is a fixed list of clients, as read from the clients:
// section of the edge's configuration: each client is a token and a role
// bound to it (RolePolicy). The zero value denies everything.
type StaticPolicy struct {
	*RolePolicy
}

// NewStaticPolicy returns a policy for rules. Names must be unique and
// non-empty, and no two clients may share a token.
func NewStaticPolicy(rules []ClientRule) (*StaticPolicy, error) {
	cfg, err := ClientRoles(rules)
	if err != nil {
		return nil, err
	}
	p, err := NewRolePolicy(cfg)
	if err != nil {
		return nil, err
	}
	return &StaticPolicy{RolePolicy: p}, nil
}

// ClientRoles reads clients as tokens and roles: each client is a token
// of its name and a role of its name that matches only that token (a
// client whose TokenSHA256 is all zero has no token: its role matches the
// person or automation of its name, signed in otherwise). The
// roles' denials read as the clients' always did. It checks the rules as
// NewStaticPolicy does.
func ClientRoles(rules []ClientRule) (RoleConfig, error) {
	var cfg RoleConfig
	names := make(map[string]bool)
	hashes := make(map[[sha256.Size]byte]string)
	for i, r := range rules {
		if r.Name == "" {
			return cfg, fmt.Errorf("client %d has no name", i+1)
		}
		if names[r.Name] {
			return cfg, fmt.Errorf("client name %q is used twice", r.Name)
		}
		names[r.Name] = true
		personal := r.TokenSHA256 == [sha256.Size]byte{}
		if other, dup := hashes[r.TokenSHA256]; dup && !personal {
			return cfg, fmt.Errorf("clients %q and %q have the same token_sha256; give each client its own token", other, r.Name)
		}
		hashes[r.TokenSHA256] = r.Name
		for _, g := range r.Devices {
			if err := validDeviceGlob(g); err != nil {
				return cfg, fmt.Errorf("client %q: %v", r.Name, err)
			}
		}
		for _, t := range r.ExtraTypes {
			if err := ValidExtraType(t); err != nil {
				return cfg, fmt.Errorf("client %q: %w", r.Name, err)
			}
		}
		if fr := r.FileRules; fr != nil {
			if err := wire.CheckFileGlobs(append(append([]string(nil), fr.Read...), fr.Write...)); err != nil {
				return cfg, fmt.Errorf("client %q: files: %v", r.Name, err)
			}
		}
		// A client without device globs reaches no device. One without a
		// token is a person or automation of that name, proven by a user
		// certificate or a JWT.
		match := RoleMatch{Names: []string{r.Name}}
		if !personal {
			cfg.Tokens = append(cfg.Tokens, TokenEntry{Name: r.Name, TokenSHA256: r.TokenSHA256})
			match = RoleMatch{Tokens: []string{r.Name}}
		}
		cfg.Roles = append(cfg.Roles, Role{Name: r.Name, Match: match, Devices: r.Devices, Allow: r.allow(), legacy: true})
	}
	return cfg, nil
}

// allow is the grant of a client rule.
func (r *ClientRule) allow() Allow {
	return Allow{TCP: r.TCP, UDP: r.UDP, PTY: r.PTY, Exec: r.Exec, Reload: r.Reload, Files: r.Files, FileRules: r.FileRules,
		ExtraTypes: r.ExtraTypes, Recording: r.Recording, Recordings: r.Recordings}
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
	if r := allowRule(t); r != "" {
		return r
	}
	return "none: clients may not open it"
}

// allowRule names the rule of a client's or role's allow that grants
// streams of type t ("allow.tcp"), or "" when none does.
func allowRule(t wire.MsgType) string {
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
	return ""
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
func (AllowAll) DeviceAllowed(Identity, DeviceRef) bool { return true }

// Authorize always allows.
func (AllowAll) Authorize(Identity, DeviceRef, Request) error { return nil }

// denyAll is the policy of a Server without one.
type denyAll struct{}

func (denyAll) Authenticate(string) (Identity, bool) { return Identity{}, false }
func (denyAll) AuthenticateHash([sha256.Size]byte) (Identity, bool) {
	return Identity{}, false
}
func (denyAll) DeviceAllowed(Identity, DeviceRef) bool              { return false }
func (denyAll) Authorize(id Identity, d DeviceRef, r Request) error { return denial(id, d.ID, r) }

// ValidDeviceGlob checks a glob on device IDs, of a client, a role or the
// labels file: letters, digits, '.', '-', '_', ':' and '*'.
func ValidDeviceGlob(g string) error { return validDeviceGlob(g) }

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
