package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tetherhq/tether/internal/limitread"
	"github.com/tetherhq/tether/internal/yamlconf"
)

// Environment variables the CLI reads. Flags beat them; they beat the
// config file.
const (
	EnvEdge      = "TETHER_EDGE"
	EnvToken     = "TETHER_TOKEN"
	EnvTokenFile = "TETHER_TOKEN_FILE"
	EnvCA        = "TETHER_CA"
	EnvProfile   = "TETHER_PROFILE"
	EnvConfig    = "TETHER_CONFIG"
)

// Size limits of the files the CLI reads.
const (
	maxConfigFile = 1 << 20
	maxTokenFile  = 16 << 10
)

// Profile is one named set of connection settings in the config file.
// Relative paths are relative to the config file's directory.
type Profile struct {
	Edge      string `yaml:"edge"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	CA        string `yaml:"ca"`
}

// ConfigFile is ~/.config/tether/config.yaml:
//
//	default: prod
//	profiles:
//	  prod:
//	    edge: https://edge.example.com:8443
//	    token_file: prod.token
//	    ca: ca.crt
//	  lab:
//	    edge: https://10.0.0.2:8443
//	    token: 3f9c...
type ConfigFile struct {
	Default  string             `yaml:"default"`
	Profiles map[string]Profile `yaml:"profiles"`
}

// DefaultConfigPath is $XDG_CONFIG_HOME/tether/config.yaml, or
// ~/.config/tether/config.yaml when XDG_CONFIG_HOME is unset.
func DefaultConfigPath(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "tether", "config.yaml")
	}
	home := getenv("HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = h
		}
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".config", "tether", "config.yaml")
}

// LoadConfigFile reads and checks a config file. Unknown keys are errors,
// reported with their line.
func LoadConfigFile(path string) (*ConfigFile, error) {
	b, err := limitread.File(path, maxConfigFile)
	if err != nil {
		return nil, err
	}
	return parseConfig(b, path)
}

func parseConfig(b []byte, path string) (*ConfigFile, error) {
	var cf ConfigFile
	doc, err := yamlconf.Parse(b)
	if err == nil && doc != nil {
		err = yamlconf.Decode(b, doc, &cf)
	}
	if err != nil {
		var e *yamlconf.Error
		if errors.As(err, &e) && e.Line > 0 {
			msg := e.Msg
			if e.Key != "" {
				msg = e.Key + ": " + msg
			}
			return nil, fmt.Errorf("%s:%d: %s", path, e.Line, msg)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cf.Default != "" {
		if _, ok := cf.Profiles[cf.Default]; !ok {
			return nil, fmt.Errorf("%s: default profile %q is not defined under profiles", path, cf.Default)
		}
	}
	for name, p := range cf.Profiles {
		if p.Token != "" && p.TokenFile != "" {
			return nil, fmt.Errorf("%s: profile %q sets both token and token_file; keep one", path, name)
		}
	}
	return &cf, nil
}

// Settings are the connection settings of one run, after flags, the
// environment and the config file were merged.
type Settings struct {
	Edge  string
	Token string
	CA    string
	// Profile is the profile the file settings came from ("" for none).
	Profile string
	// TokenFrom names where the token came from, for error messages
	// ("--token", "TETHER_TOKEN", "profile prod"...). Never the token.
	TokenFrom string
	// Warnings are problems worth telling the user that do not stop the
	// command, such as a token file other users can read.
	Warnings []string
	// LoginDir holds the login of `tether login` for this profile or
	// edge (login.go); "" when there is no config directory.
	LoginDir string
}

// source is one layer of settings: flags, environment or a profile.
type source struct {
	name                       string
	edge, token, tokenFile, ca string
	tokenName, tokenFileName   string // how to call token/tokenFile in messages
	baseDir                    string // relative paths are resolved against it
}

// resolveSettings merges the layers: flags beat the environment, which
// beats the profile in the config file. Token and token file are one
// setting: the highest layer that sets either wins, and a layer that sets
// both is an error.
func resolveSettings(g *globalOptions, getenv func(string) string) (*Settings, error) {
	flags := source{name: "flags", edge: g.edge, token: g.token, tokenFile: g.tokenFile, ca: g.ca,
		tokenName: "--token", tokenFileName: "--token-file"}
	env := source{name: "environment", edge: getenv(EnvEdge), token: getenv(EnvToken),
		tokenFile: getenv(EnvTokenFile), ca: getenv(EnvCA), tokenName: EnvToken, tokenFileName: EnvTokenFile}

	cfgPath, explicit := g.config, g.config != ""
	if !explicit {
		if p := getenv(EnvConfig); p != "" {
			cfgPath, explicit = p, true
		} else {
			cfgPath = DefaultConfigPath(getenv)
		}
	}
	profileName := g.profile
	if profileName == "" {
		profileName = getenv(EnvProfile)
	}
	var file source
	s := &Settings{}
	if cfgPath != "" {
		cf, err := LoadConfigFile(cfgPath)
		switch {
		case err == nil:
			name := profileName
			if name == "" {
				name = cf.Default
			}
			if name != "" {
				p, ok := cf.Profiles[name]
				if !ok {
					return nil, usageErrorf("profile %q is not defined in %s (profiles: %s)", name, cfgPath, profileNames(cf))
				}
				s.Profile = name
				file = source{name: "profile " + name, edge: p.Edge, token: p.Token, tokenFile: p.TokenFile, ca: p.CA,
					tokenName: "token in profile " + name, tokenFileName: "token_file in profile " + name,
					baseDir: filepath.Dir(cfgPath)}
			}
		case errors.Is(err, os.ErrNotExist) && !explicit:
			// No config file: flags and environment only.
		default:
			return nil, &configError{fmt.Errorf("read config file: %w", err)}
		}
	}
	if profileName != "" && s.Profile == "" {
		return nil, usageErrorf("profile %q requested but there is no config file at %s", profileName, cfgPath)
	}

	layers := []source{flags, env, file}
	for _, l := range layers {
		if s.Edge == "" && l.edge != "" {
			s.Edge = l.edge
		}
		if s.CA == "" && l.ca != "" {
			s.CA = expandPath(l.ca, l.baseDir)
		}
	}
	for _, l := range layers {
		if l.token == "" && l.tokenFile == "" {
			continue
		}
		if l.token != "" && l.tokenFile != "" {
			return nil, usageErrorf("both %s and %s are set; keep one", l.tokenName, l.tokenFileName)
		}
		if l.token != "" {
			s.Token, s.TokenFrom = strings.TrimSpace(l.token), l.tokenName
			break
		}
		path := expandPath(l.tokenFile, l.baseDir)
		if fi, err := os.Stat(path); err == nil && othersCanRead(fi) {
			s.Warnings = append(s.Warnings, fmt.Sprintf("the token file %s can be read by other users; run: chmod 600 %s", path, path))
		}
		b, err := limitread.File(path, maxTokenFile)
		if err != nil {
			return nil, &configError{fmt.Errorf("read the token file from %s: %w", l.tokenFileName, err)}
		}
		s.Token, s.TokenFrom = strings.TrimSpace(string(b)), l.tokenFileName+" ("+path+")"
		if s.Token == "" {
			return nil, &configError{fmt.Errorf("the token file %s is empty", path)}
		}
		break
	}
	s.LoginDir = loginDirFor(cfgPath, s.Profile, s.Edge)
	if s.Token == "" && hasLogin(s) {
		s.TokenFrom = "your login (tether login)"
	}
	return s, nil
}

func profileNames(cf *ConfigFile) string {
	if len(cf.Profiles) == 0 {
		return "none"
	}
	names := make([]string, 0, len(cf.Profiles))
	for n := range cf.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// expandPath expands a leading ~/ and makes a relative path relative to
// base (when base is set).
func expandPath(p, base string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	if base != "" && !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	return p
}

// requireEdge checks the settings a command that talks to the edge needs.
func (s *Settings) requireEdge() error {
	if s.Edge == "" {
		return usageErrorf("no edge URL: pass --edge https://HOST:PORT, set %s, or add a profile to %s", EnvEdge, "~/.config/tether/config.yaml")
	}
	if !strings.HasPrefix(s.Edge, "https://") {
		return usageErrorf("edge URL %q must start with https://", s.Edge)
	}
	if s.Token == "" && !hasLogin(s) {
		return usageErrorf("no token and no login: run `tether login`, pass --token or --token-file, set %s, or add token_file to a profile", EnvToken)
	}
	return nil
}
