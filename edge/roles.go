package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tetherhq/tether/transport/labels"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// DeviceRef is what a policy knows of a device: its ID, and its labels
// from trusted sources only, the device's certificate and the edge's
// labels file, never what the agent says about itself.
type DeviceRef struct {
	ID     string
	Labels map[string]string
}

// Methods of Identity.Method.
const (
	MethodToken = "token"
	MethodOIDC  = "oidc"
	MethodJWT   = "jwt"
)

// knownMethod reports whether m is an Identity.Method: a peer's stream of
// any other is refused rather than read as a person's.
func knownMethod(m string) bool {
	return m == "" || m == MethodToken || m == MethodOIDC || m == MethodJWT
}

// method is id's method, "token" when it is empty.
func (id Identity) method() string {
	if id.Method == "" {
		return MethodToken
	}
	return id.Method
}

// String names the identity and how it was proven, as the audit does:
// "alice@example.com (oidc)", "ci-deploy (token)".
func (id Identity) String() string { return id.Name + " (" + id.method() + ")" }

// Allow is what a role grants on the devices it covers.
type Allow struct {
	// TCP and UDP are the targets that may be reached.
	TCP, UDP []target.Pattern
	// PTY allows shells and commands (PTY and PTY command streams).
	PTY bool
	// Exec allows commands without a terminal.
	Exec bool
	// Reload allows asking the device to reload its configuration.
	Reload bool
	// Files allows file transfers: any path the device admits, unless
	// FileRules narrows them.
	Files     bool
	FileRules *FileRules
	// ExtraTypes are stream types Tether does not define that the edge
	// relays (ValidExtraType).
	ExtraTypes []wire.MsgType
	// Recording, when not empty, sets the recording mode of the shells
	// the role allows; of several roles, the strictest mode wins.
	Recording RecordingMode
	// Recordings allows listing and reading the recordings of the
	// devices the role covers ("recordings: read").
	Recordings bool
}

// RoleMatch says which identities a role applies to: an identity signed
// in through the identity provider (oidc, jwt) by its name or one of its
// groups, a static token by the name of its token entry. A token never
// matches names or groups, and a person never matches tokens, so that a
// token named like a person gains nothing of theirs.
type RoleMatch struct {
	Groups, Names, Tokens []string
}

// Role grants Allow on the devices it covers to the identities it
// matches. A device is covered when its ID matches one of Devices (all IDs
// when Devices is empty but Labels is not) and every key of Labels is among its labels with
// a value that matches the pattern (labels.MatchGlob). A role must name
// devices by ID or by label.
type Role struct {
	Name    string
	Match   RoleMatch
	Devices []string
	Labels  map[string]string
	Allow   Allow
	// legacy: the role is a clients: entry; its denials read as they did
	// before roles.
	legacy bool
}

// TokenEntry is a static bearer token, a service account: roles match it
// by Name (RoleMatch.Tokens).
type TokenEntry struct {
	Name        string
	TokenSHA256 [sha256.Size]byte
}

// LabelRule gives Labels to every device whose ID matches the Devices
// glob: a line of the edge's labels file.
type LabelRule struct {
	Devices string
	Labels  map[string]string
}

// RoleConfig is what NewRolePolicy builds a policy from.
type RoleConfig struct {
	Tokens []TokenEntry
	Roles  []Role
	// DeviceLabels label devices from the edge's side, on top of the
	// labels of their certificates; in order, a later rule wins for a key
	// that two rules give.
	DeviceLabels []LabelRule
}

// RolePolicy is a Policy of roles: deny by default; an identity may do
// what any role that matches it and covers the device allows (the union
// of their grants). Of the recording modes of those roles the strictest
// wins (required, then best_effort, then off). It implements
// HashAuthenticator for its static tokens; identities of other methods
// are checked again after a reload by their name and groups, which the
// new roles see as the old ones did.
type RolePolicy struct {
	tokens []TokenEntry
	roles  []Role
	labels []LabelRule
}

// NewRolePolicy checks cfg and returns its policy. Role and token names
// must be unique and non-empty, a role's tokens must be token entries,
// and no two tokens may share a hash.
func NewRolePolicy(cfg RoleConfig) (*RolePolicy, error) {
	tokens := make(map[string]bool)
	hashes := make(map[[sha256.Size]byte]string)
	for i, t := range cfg.Tokens {
		if t.Name == "" {
			return nil, fmt.Errorf("token %d has no name", i+1)
		}
		if tokens[t.Name] {
			return nil, fmt.Errorf("token name %q is used twice", t.Name)
		}
		tokens[t.Name] = true
		if other, dup := hashes[t.TokenSHA256]; dup {
			return nil, fmt.Errorf("tokens %q and %q have the same token_sha256; give each its own token", other, t.Name)
		}
		hashes[t.TokenSHA256] = t.Name
	}
	names := make(map[string]bool)
	for i, r := range cfg.Roles {
		if r.Name == "" {
			return nil, fmt.Errorf("role %d has no name", i+1)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("role name %q is used twice", r.Name)
		}
		names[r.Name] = true
		if err := checkRole(r, tokens); err != nil {
			return nil, fmt.Errorf("role %q: %w", r.Name, err)
		}
	}
	for i, lr := range cfg.DeviceLabels {
		if err := validDeviceGlob(lr.Devices); err != nil {
			return nil, fmt.Errorf("device labels %d: %v", i+1, err)
		}
		if err := labels.Set(lr.Labels).Validate(); err != nil {
			return nil, fmt.Errorf("device labels %d (%s): %v", i+1, lr.Devices, err)
		}
	}
	return &RolePolicy{
		tokens: slices.Clone(cfg.Tokens),
		roles:  slices.Clone(cfg.Roles),
		labels: slices.Clone(cfg.DeviceLabels),
	}, nil
}

func checkRole(r Role, tokens map[string]bool) error {
	m := r.Match
	if len(m.Groups)+len(m.Names)+len(m.Tokens) == 0 {
		return fmt.Errorf("match names no one: give groups, names or tokens")
	}
	for _, t := range m.Tokens {
		if !tokens[t] {
			return fmt.Errorf("match.tokens: no token is named %q; list it under tokens: with its token_sha256", t)
		}
	}
	for _, s := range append(slices.Clone(m.Groups), m.Names...) {
		if s == "" {
			return fmt.Errorf("match: an empty group or name")
		}
	}
	if len(r.Devices) == 0 && len(r.Labels) == 0 && !r.legacy {
		return fmt.Errorf("devices: give ids or labels (ids: [\"*\"] for every device)")
	}
	for _, g := range r.Devices {
		if err := validDeviceGlob(g); err != nil {
			return err
		}
	}
	for k, v := range r.Labels {
		if err := labels.ValidKey(k); err != nil {
			return err
		}
		if err := labels.ValidGlob(v); err != nil {
			return fmt.Errorf("label %s: %v", k, err)
		}
	}
	a := r.Allow
	for _, t := range a.ExtraTypes {
		if err := ValidExtraType(t); err != nil {
			return err
		}
	}
	if fr := a.FileRules; fr != nil {
		if err := wire.CheckFileGlobs(append(slices.Clone(fr.Read), fr.Write...)); err != nil {
			return fmt.Errorf("files: %v", err)
		}
	}
	switch a.Recording {
	case "", RecordingOff, RecordingBestEffort, RecordingRequired:
	default:
		return fmt.Errorf("recording %q: use off, best_effort or required", a.Recording)
	}
	return nil
}

// Authenticate hashes token and compares it with every token's hash in
// constant time, without stopping at the first match.
func (p *RolePolicy) Authenticate(token string) (Identity, bool) {
	if token == "" {
		return Identity{}, false
	}
	return p.AuthenticateHash(HashToken(token))
}

// AuthenticateHash is Authenticate for a token's SHA-256.
func (p *RolePolicy) AuthenticateHash(sum [sha256.Size]byte) (Identity, bool) {
	if p == nil {
		return Identity{}, false
	}
	found := -1
	for i := range p.tokens {
		if subtle.ConstantTimeCompare(sum[:], p.tokens[i].TokenSHA256[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, false
	}
	return Identity{Name: p.tokens[found].Name}, true
}

// Admit reports whether a role matches id, a person (method oidc or jwt):
// the edge admits a user certificate or a JWT only then, and asks again on
// every reload. Tokens are admitted by Authenticate.
func (p *RolePolicy) Admit(id Identity) bool {
	if p == nil || id.method() == MethodToken {
		return false
	}
	for i := range p.roles {
		if p.roles[i].matchesIdentity(id) {
			return true
		}
	}
	return false
}

// matchesIdentity reports whether r applies to id.
func (r *Role) matchesIdentity(id Identity) bool {
	if id.Name == "" {
		return false
	}
	if id.method() == MethodToken {
		return slices.Contains(r.Match.Tokens, id.Name)
	}
	if slices.Contains(r.Match.Names, id.Name) {
		return true
	}
	for _, g := range id.Groups {
		if slices.Contains(r.Match.Groups, g) {
			return true
		}
	}
	return false
}

// covers reports whether r covers dev.
func (r *Role) covers(dev DeviceRef) bool {
	if len(r.Devices) == 0 && len(r.Labels) == 0 {
		return false
	}
	if len(r.Devices) > 0 && !slices.ContainsFunc(r.Devices, func(g string) bool { return target.MatchGlob(g, dev.ID) }) {
		return false
	}
	for k, pat := range r.Labels {
		v, ok := dev.Labels[k]
		if !ok || !labels.MatchGlob(pat, v) {
			return false
		}
	}
	return true
}

// rolesOf returns the roles that apply to id: all of them, and those
// that also cover dev.
func (p *RolePolicy) rolesOf(id Identity, dev DeviceRef) (mine, here []*Role) {
	if p == nil {
		return nil, nil
	}
	for i := range p.roles {
		r := &p.roles[i]
		if !r.matchesIdentity(id) {
			continue
		}
		mine = append(mine, r)
		if r.covers(dev) {
			here = append(here, r)
		}
	}
	return mine, here
}

// DeviceAllowed reports whether a role of id covers dev.
func (p *RolePolicy) DeviceAllowed(id Identity, dev DeviceRef) bool {
	_, here := p.rolesOf(id, dev)
	return len(here) > 0
}

// Authorize allows req when one of the roles of id that cover dev allows
// it. A denial names what would have allowed it: the role's narrower
// grant, or that no role reaches the device.
func (p *RolePolicy) Authorize(id Identity, dev DeviceRef, req Request) error {
	_, err := p.authorize(id, dev, req)
	return err
}

// GrantingRole returns the name of the first role that allows req, or ""
// when none does or the role is a clients: entry (whose name is the
// client's).
func (p *RolePolicy) GrantingRole(id Identity, dev DeviceRef, req Request) string {
	r, err := p.authorize(id, dev, req)
	if err != nil || r.legacy {
		return ""
	}
	return r.Name
}

func (p *RolePolicy) authorize(id Identity, dev DeviceRef, req Request) (*Role, error) {
	mine, here := p.rolesOf(id, dev)
	for _, r := range here {
		if r.Allow.allows(req) {
			return r, nil
		}
	}
	if legacyOnly(id, mine) {
		err := denial(id, dev.ID, req)
		if r := allowRule(req.Type); r != "" {
			err = fmt.Errorf("%w: its %s on the edge does not cover it", err, r)
		}
		return nil, err
	}
	if len(here) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotAllowed, noRoleText(id, dev.ID))
	}
	return nil, fmt.Errorf("%w: %s", denial(id, dev.ID, req), narrower(id, dev.ID, here, req))
}

// legacyOnly reports whether the roles rs of id are all clients:
// entries, or id is a token without roles: its denials then read as before
// roles.
func legacyOnly(id Identity, rs []*Role) bool {
	if len(rs) == 0 {
		return id.method() == MethodToken
	}
	for _, r := range rs {
		if !r.legacy {
			return false
		}
	}
	return true
}

func noRoleText(id Identity, device string) string {
	return fmt.Sprintf("no role gives %s access to device %s", id.Name, device)
}

// DeviceDenial says why id may not reach dev.
func (p *RolePolicy) DeviceDenial(id Identity, dev DeviceRef) string {
	mine, _ := p.rolesOf(id, dev)
	if legacyOnly(id, mine) {
		return fmt.Sprintf("client %s may not reach device %s", id.Name, dev.ID)
	}
	return noRoleText(id, dev.ID)
}

// narrower says what the roles in here allow instead of req.
func narrower(id Identity, device string, here []*Role, req Request) string {
	names := make([]string, len(here))
	for i, r := range here {
		names[i] = r.Name
	}
	who := func(rs []string) string {
		if len(rs) == 1 {
			return "role " + rs[0] + " allows"
		}
		return "roles " + strings.Join(rs, ", ") + " allow"
	}
	var granted, what []string
	switch req.Type {
	case wire.MsgTCP, wire.MsgUDP:
		word := typeWord(req.Type)
		for _, r := range here {
			ps := r.Allow.TCP
			if req.Type == wire.MsgUDP {
				ps = r.Allow.UDP
			}
			if len(ps) == 0 {
				continue
			}
			granted = append(granted, r.Name)
			for _, pt := range ps {
				what = append(what, pt.String())
			}
		}
		if len(granted) > 0 {
			return fmt.Sprintf("%s %s only to %s", who(granted), word, strings.Join(dedup(what), ", "))
		}
	case wire.MsgFileTransfer:
		dir := "download"
		if req.File != nil && req.File.Direction == 1 {
			dir = "upload"
		}
		for _, r := range here {
			if !r.Allow.Files || r.Allow.FileRules == nil {
				continue
			}
			globs := r.Allow.FileRules.Read
			if dir == "upload" {
				globs = r.Allow.FileRules.Write
			}
			granted = append(granted, r.Name)
			what = append(what, globs...)
		}
		if len(granted) > 0 {
			if len(what) == 0 {
				return fmt.Sprintf("%s no file %ss", who(granted), dir)
			}
			return fmt.Sprintf("%s file %ss only beneath %s", who(granted), dir, strings.Join(dedup(what), ", "))
		}
	}
	return fmt.Sprintf("no role of %s on device %s allows %s (its roles there: %s)", id.Name, device, typeWord(req.Type), strings.Join(names, ", "))
}

func dedup(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// allows reports whether a grants req.
func (a *Allow) allows(req Request) bool {
	switch req.Type {
	case wire.MsgTCP:
		return matchAny(a.TCP, req.Target)
	case wire.MsgUDP:
		return matchAny(a.UDP, req.Target)
	case wire.MsgPTY, wire.MsgPTYCommand:
		return a.PTY
	case wire.MsgReload:
		return a.Reload
	case wire.MsgFileTransfer:
		return a.Files && allowFile(a.FileRules, req.File)
	case wire.MsgExec:
		return a.Exec
	}
	return relayable(req.Type) && slices.Contains(a.ExtraTypes, req.Type)
}

// Roles returns the names of the roles of id that cover dev.
func (p *RolePolicy) Roles(id Identity, dev DeviceRef) []string {
	_, here := p.rolesOf(id, dev)
	out := make([]string, len(here))
	for i, r := range here {
		out[i] = r.Name
	}
	return out
}

// Grants returns the union of the grants of the roles of id that cover
// dev, ok false when none does. Its Recording is the strictest of theirs.
func (p *RolePolicy) Grants(id Identity, dev DeviceRef) (a Allow, ok bool) {
	_, here := p.rolesOf(id, dev)
	for _, r := range here {
		g := r.Allow
		a.TCP = append(a.TCP, g.TCP...)
		a.UDP = append(a.UDP, g.UDP...)
		a.PTY = a.PTY || g.PTY
		a.Exec = a.Exec || g.Exec
		a.Reload = a.Reload || g.Reload
		a.Recordings = a.Recordings || g.Recordings
		a.Recording = StricterRecording(a.Recording, g.Recording)
		for _, t := range g.ExtraTypes {
			if !slices.Contains(a.ExtraTypes, t) {
				a.ExtraTypes = append(a.ExtraTypes, t)
			}
		}
		switch {
		case !g.Files:
		case g.FileRules == nil || a.Files && a.FileRules == nil:
			a.Files, a.FileRules = true, nil // any path the device admits
		default:
			if a.FileRules == nil {
				a.FileRules = &FileRules{}
			}
			a.Files = true
			a.FileRules.Read = append(a.FileRules.Read, g.FileRules.Read...)
			a.FileRules.Write = append(a.FileRules.Write, g.FileRules.Write...)
		}
	}
	return a, len(here) > 0
}

// RecordingMode is the recording mode the roles of id that cover dev set
// for its shells: the strictest of theirs, or "" (the edge's mode) when
// none sets one.
func (p *RolePolicy) RecordingMode(id Identity, dev DeviceRef) RecordingMode {
	a, _ := p.Grants(id, dev)
	return a.Recording
}

// RecordingsAllowedOn reports whether a role of id that covers dev grants
// recordings: read.
func (p *RolePolicy) RecordingsAllowedOn(id Identity, dev DeviceRef) bool {
	a, _ := p.Grants(id, dev)
	return a.Recordings
}

// RecordingsAllowed reports whether a role of id grants recordings: read
// on some device: the right to ask for the list at all, which then holds
// the recordings of the devices RecordingsAllowedOn admits.
func (p *RolePolicy) RecordingsAllowed(id Identity) bool {
	if p == nil {
		return false
	}
	for i := range p.roles {
		if r := &p.roles[i]; r.Allow.Recordings && r.matchesIdentity(id) {
			return true
		}
	}
	return false
}

// recordingRank orders the modes from the least strict.
var recordingRank = map[RecordingMode]int{"": 0, RecordingOff: 1, RecordingBestEffort: 2, RecordingRequired: 3}

// StricterRecording returns the stricter of two recording modes:
// required, then best_effort, then off, then unset.
func StricterRecording(a, b RecordingMode) RecordingMode {
	if recordingRank[b] > recordingRank[a] {
		return b
	}
	return a
}

// LabelDevice returns dev with the labels of the edge's labels file on
// top of its own (those of its certificate).
func (p *RolePolicy) LabelDevice(dev DeviceRef) DeviceRef {
	if p == nil || len(p.labels) == 0 {
		return dev
	}
	var add labels.Set
	for _, lr := range p.labels {
		if target.MatchGlob(lr.Devices, dev.ID) {
			add = labels.Merge(add, lr.Labels)
		}
	}
	if add != nil {
		dev.Labels = labels.Merge(dev.Labels, add)
	}
	return dev
}
