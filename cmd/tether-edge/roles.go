package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport/labels"
	"github.com/tetherhq/tether/transport/target"
)

// tokenConfig is one entry of tokens:, a static bearer token for a service
// account, which roles match by name (match.tokens).
type tokenConfig struct {
	Name        string `yaml:"name"`
	TokenSHA256 string `yaml:"token_sha256"`
}

// roleConfig is one entry of roles:.
type roleConfig struct {
	Name    string            `yaml:"name"`
	Match   roleMatchConfig   `yaml:"match"`
	Devices roleDevicesConfig `yaml:"devices"`
	Allow   roleAllowConfig   `yaml:"allow"`
	// Recording is the recording mode of the shells the role allows:
	// off, best_effort or required; empty keeps the edge's.
	Recording string `yaml:"recording"`
}

// roleAllowConfig is roles[].allow: a client's allow, and the right to
// read recordings.
type roleAllowConfig struct {
	allowConfig `yaml:",inline"`
	// Recordings is "read" to allow listing and playing the recordings
	// of the devices the role covers.
	Recordings string `yaml:"recordings"`
}

// roleMatchConfig is roles[].match: who the role applies to.
type roleMatchConfig struct {
	Groups []string `yaml:"groups"`
	Names  []string `yaml:"names"`
	Tokens []string `yaml:"tokens"`
}

// roleDevicesConfig is roles[].devices: the devices the role covers, by ID
// glob and by label pattern; both must hold when both are given.
type roleDevicesConfig struct {
	IDs    []string          `yaml:"ids"`
	Labels map[string]string `yaml:"labels"`
}

// parseAllow checks an allow: section; at is its key path.
func parseAllow(al allowConfig, at []string, bad func(string, ...string) error) (edge.Allow, error) {
	k := func(keys ...string) []string { return append(append([]string(nil), at...), keys...) }
	a := edge.Allow{PTY: al.PTY, Reload: al.Reload, Files: al.Files.on, FileRules: al.Files.rules, Exec: al.Exec}
	for j, p := range al.TCP {
		pat, err := target.ParsePattern(p)
		if err != nil {
			return a, bad(err.Error(), k("tcp", strconv.Itoa(j))...)
		}
		a.TCP = append(a.TCP, pat)
	}
	for j, p := range al.UDP {
		pat, err := target.ParsePattern(p)
		if err != nil {
			return a, bad(err.Error(), k("udp", strconv.Itoa(j))...)
		}
		a.UDP = append(a.UDP, pat)
	}
	var err error
	if a.ExtraTypes, err = parseExtraTypes(al.ExtraTypes); err != nil {
		var xe *extraTypeError
		if errors.As(err, &xe) {
			return a, bad(xe.msg, k("extra_types", strconv.Itoa(xe.index))...)
		}
		return a, bad(err.Error(), k("extra_types")...)
	}
	return a, nil
}

// parseRecordingsRight checks allow.recordings, at its key path at.
func parseRecordingsRight(v string, at []string, bad func(string, ...string) error) (bool, error) {
	switch v {
	case "":
		return false, nil
	case "read":
		return true, nil
	}
	return false, bad(fmt.Sprintf("%q: the one right on recordings is read (recordings: read); leave it out for none", v), append(at, "recordings")...)
}

// parseRoles builds the policy: the tokens and roles sections, and every
// clients: entry (already checked, as rules) as a token and a role bound
// to it; then the labels file of the devices: section.
func parseRoles(fc *fileConfig, rules []edge.ClientRule, bad func(string, ...string) error, rel func(string) string) (*edge.RolePolicy, error) {
	cfg, err := edge.ClientRoles(rules)
	if err != nil {
		return nil, bad(err.Error(), "clients")
	}
	clients := make(map[string]bool, len(rules))
	for _, r := range rules {
		clients[r.Name] = true
	}
	tokens := make(map[string]bool)
	for i, t := range fc.Tokens {
		k := func(keys ...string) []string { return append([]string{"tokens", strconv.Itoa(i)}, keys...) }
		switch {
		case t.Name == "":
			return nil, bad("required: a name for the token, which roles match (match.tokens) and the audit shows", k("name")...)
		case clients[t.Name]:
			return nil, bad(fmt.Sprintf("%q is the name of a clients: entry; give the token another name", t.Name), k("name")...)
		case tokens[t.Name]:
			return nil, bad(fmt.Sprintf("%q is used twice", t.Name), k("name")...)
		}
		tokens[t.Name] = true
		sum, err := edge.ParseTokenSHA256(t.TokenSHA256)
		if err != nil {
			return nil, bad(tokenHashProblem(t.TokenSHA256, err), k("token_sha256")...)
		}
		cfg.Tokens = append(cfg.Tokens, edge.TokenEntry{Name: t.Name, TokenSHA256: sum})
	}
	roles := make(map[string]bool)
	for i, rc := range fc.Roles {
		k := func(keys ...string) []string { return append([]string{"roles", strconv.Itoa(i)}, keys...) }
		switch {
		case rc.Name == "":
			return nil, bad("required: a name for the role, which denials and the audit show", k("name")...)
		case clients[rc.Name]:
			return nil, bad(fmt.Sprintf("%q is the name of a clients: entry, which is a role of its own; give the role another name", rc.Name), k("name")...)
		case roles[rc.Name]:
			return nil, bad(fmt.Sprintf("%q is used twice", rc.Name), k("name")...)
		}
		roles[rc.Name] = true
		m := rc.Match
		if len(m.Groups)+len(m.Names)+len(m.Tokens) == 0 {
			return nil, bad("required: groups, names or tokens the role applies to, such as {groups: [field-eng]}", k("match")...)
		}
		for j, t := range m.Tokens {
			if !tokens[t] && !clients[t] {
				return nil, bad(fmt.Sprintf("no token is named %q: list it under tokens: with its token_sha256", t), k("match", "tokens", strconv.Itoa(j))...)
			}
		}
		if len(rc.Devices.IDs) == 0 && len(rc.Devices.Labels) == 0 {
			return nil, bad("required: ids or labels of the devices the role covers, such as {ids: [\"gw-*\"]} or {labels: {site: berlin}}", k("devices")...)
		}
		r := edge.Role{Name: rc.Name, Match: edge.RoleMatch{Groups: m.Groups, Names: m.Names, Tokens: m.Tokens},
			Devices: rc.Devices.IDs, Labels: rc.Devices.Labels}
		for j, g := range rc.Devices.IDs {
			if err := edge.ValidDeviceGlob(g); err != nil {
				return nil, bad(err.Error(), k("devices", "ids", strconv.Itoa(j))...)
			}
		}
		for key, pat := range rc.Devices.Labels {
			if err := labels.ValidKey(key); err != nil {
				return nil, bad(strings.TrimPrefix(err.Error(), labels.ErrSyntax.Error()+": "), k("devices", "labels")...)
			}
			if err := labels.ValidGlob(pat); err != nil {
				return nil, bad(strings.TrimPrefix(err.Error(), labels.ErrSyntax.Error()+": ")+"; quote a pattern with '*' in YAML", k("devices", "labels", key)...)
			}
		}
		if r.Allow, err = parseAllow(rc.Allow.allowConfig, k("allow"), bad); err != nil {
			return nil, err
		}
		if r.Allow.Recordings, err = parseRecordingsRight(rc.Allow.Recordings, k("allow"), bad); err != nil {
			return nil, err
		}
		switch mode := edge.RecordingMode(rc.Recording); mode {
		case "", edge.RecordingOff, edge.RecordingBestEffort, edge.RecordingRequired:
			r.Allow.Recording = mode
		default:
			return nil, bad(fmt.Sprintf("%q: use off, best_effort or required", rc.Recording), k("recording")...)
		}
		cfg.Roles = append(cfg.Roles, r)
	}
	if f := fc.Devices.LabelsFile; f != "" {
		fc.Devices.LabelsFile = rel(f)
		if cfg.DeviceLabels, err = loadLabelsFile(fc.Devices.LabelsFile); err != nil {
			return nil, bad(err.Error(), "devices", "labels_file")
		}
	}
	pol, err := edge.NewRolePolicy(cfg)
	if err != nil {
		return nil, bad(err.Error(), "roles")
	}
	return pol, nil
}
