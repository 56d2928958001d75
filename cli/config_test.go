package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// env is a fake environment for resolveSettings.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

const twoProfiles = `default: prod
profiles:
  prod:
    edge: https://prod.example.com:8443
    token_file: prod.token
    ca: prod-ca.crt
  lab:
    edge: https://lab.example.com
    token: lab-token
`

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "xdg", "tether", "config.yaml"), twoProfiles)
	writeFile(t, filepath.Join(dir, "xdg", "tether", "prod.token"), "prod-token\n")
	flagTokenFile := writeFile(t, filepath.Join(dir, "flag.token"), "  flag-file-token \n")
	envTokenFile := writeFile(t, filepath.Join(dir, "env.token"), "env-file-token")
	cfgDir := filepath.Dir(cfg)

	tests := []struct {
		name      string
		flags     globalOptions
		env       env
		want      Settings
		wantUsage string
	}{
		{
			name: "default profile of the XDG config file",
			env:  env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg")},
			want: Settings{Edge: "https://prod.example.com:8443", Token: "prod-token", CA: filepath.Join(cfgDir, "prod-ca.crt"), Profile: "prod"},
		},
		{
			name:  "--profile picks another profile",
			flags: globalOptions{profile: "lab"},
			env:   env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg")},
			want:  Settings{Edge: "https://lab.example.com", Token: "lab-token", Profile: "lab"},
		},
		{
			name: "TETHER_PROFILE picks a profile",
			env:  env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), EnvProfile: "lab"},
			want: Settings{Edge: "https://lab.example.com", Token: "lab-token", Profile: "lab"},
		},
		{
			name:  "--profile beats TETHER_PROFILE",
			flags: globalOptions{profile: "prod"},
			env:   env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), EnvProfile: "lab"},
			want:  Settings{Edge: "https://prod.example.com:8443", Token: "prod-token", CA: filepath.Join(cfgDir, "prod-ca.crt"), Profile: "prod"},
		},
		{
			name: "environment beats the file",
			env: env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), EnvEdge: "https://env.example.com",
				EnvToken: "env-token", EnvCA: "/env/ca.crt"},
			want: Settings{Edge: "https://env.example.com", Token: "env-token", CA: "/env/ca.crt", Profile: "prod"},
		},
		{
			name:  "flags beat the environment",
			flags: globalOptions{edge: "https://flag.example.com", token: "flag-token", ca: "/flag/ca.crt"},
			env: env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), EnvEdge: "https://env.example.com",
				EnvToken: "env-token", EnvCA: "/env/ca.crt"},
			want: Settings{Edge: "https://flag.example.com", Token: "flag-token", CA: "/flag/ca.crt", Profile: "prod"},
		},
		{
			name:  "--token-file beats TETHER_TOKEN and is trimmed",
			flags: globalOptions{tokenFile: flagTokenFile},
			env:   env{EnvToken: "env-token", "HOME": dir},
			want:  Settings{Token: "flag-file-token"},
		},
		{
			name: "TETHER_TOKEN_FILE beats the profile's token",
			env:  env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), EnvTokenFile: envTokenFile, EnvProfile: "lab"},
			want: Settings{Edge: "https://lab.example.com", Token: "env-file-token", Profile: "lab"},
		},
		{
			name:  "--config points elsewhere",
			flags: globalOptions{config: cfg, profile: "lab"},
			env:   env{"HOME": filepath.Join(dir, "nowhere")},
			want:  Settings{Edge: "https://lab.example.com", Token: "lab-token", Profile: "lab"},
		},
		{
			name: "no config file at all is fine",
			env:  env{"HOME": filepath.Join(dir, "nowhere"), EnvEdge: "https://e", EnvToken: "t"},
			want: Settings{Edge: "https://e", Token: "t"},
		},
		{
			name:      "unknown profile",
			flags:     globalOptions{profile: "staging"},
			env:       env{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg")},
			wantUsage: `profile "staging" is not defined`,
		},
		{
			name:      "profile without a config file",
			flags:     globalOptions{profile: "lab"},
			env:       env{"HOME": filepath.Join(dir, "nowhere")},
			wantUsage: "no config file",
		},
		{
			name:      "token and token file on one layer",
			flags:     globalOptions{token: "a", tokenFile: flagTokenFile},
			env:       env{"HOME": dir},
			wantUsage: "both --token and --token-file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.flags
			got, err := resolveSettings(&g, tt.env.get)
			if tt.wantUsage != "" {
				var ue *usageError
				require.ErrorAs(t, err, &ue)
				require.Contains(t, err.Error(), tt.wantUsage)
				return
			}
			require.NoError(t, err)
			got.TokenFrom = ""
			got.LoginDir = "" // login_test.go checks it
			require.Equal(t, tt.want, *got)
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"unknown key with its line", "profiles:\n  prod:\n    edge: https://e\n    tokn: x\n",
			`config.yaml:4: unknown key "tokn" in section profiles.prod (did you mean "token"?); valid keys: ca, edge, token, token_file`},
		{"unknown top-level key", "# profiles\n\ndefualt: prod\n",
			`config.yaml:3: unknown key "defualt" (did you mean "default"?); valid keys: default, profiles`},
		{"bad indentation", "default: prod\nprofiles:\n  prod:\n    edge: https://e\n   ca: ca.crt\n", "config.yaml:5: did not find expected key"},
		{"wrong type", "profiles:\n  prod:\n    edge: [a]\n", "config.yaml:3: profiles.prod.edge: a list is not a string"},
		{"undefined default", "default: nope\nprofiles:\n  prod: {edge: https://e}\n", `default profile "nope"`},
		{"token and token_file", "profiles:\n  p: {token: a, token_file: b}\n", "both token and token_file"},
		{"not YAML", "profiles: [\n", "config.yaml:1: did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(dir, tt.name, "config.yaml"), tt.content)
			_, err := resolveSettings(&globalOptions{config: path}, env{}.get)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
	t.Run("explicit missing config file", func(t *testing.T) {
		_, err := resolveSettings(&globalOptions{config: filepath.Join(dir, "missing.yaml")}, env{}.get)
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("empty token file", func(t *testing.T) {
		p := writeFile(t, filepath.Join(dir, "empty.token"), "\n")
		_, err := resolveSettings(&globalOptions{tokenFile: p}, env{"HOME": dir}.get)
		require.ErrorContains(t, err, "empty")
	})
}

func TestTokenFileReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "open.token"), "tok")
	require.NoError(t, os.Chmod(p, 0o644))
	s, err := resolveSettings(&globalOptions{tokenFile: p}, env{"HOME": dir}.get)
	require.NoError(t, err)
	require.Equal(t, "tok", s.Token)
	require.Len(t, s.Warnings, 1)
	require.Contains(t, s.Warnings[0], "chmod 600 "+p)

	require.NoError(t, os.Chmod(p, 0o600))
	s, err = resolveSettings(&globalOptions{tokenFile: p}, env{"HOME": dir}.get)
	require.NoError(t, err)
	require.Empty(t, s.Warnings)
}

func TestDefaultConfigPath(t *testing.T) {
	require.Equal(t, "/x/tether/config.yaml", DefaultConfigPath(env{"XDG_CONFIG_HOME": "/x", "HOME": "/h"}.get))
	require.Equal(t, "/h/.config/tether/config.yaml", DefaultConfigPath(env{"HOME": "/h"}.get))
	// A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
	require.Equal(t, "/h/.config/tether/config.yaml", DefaultConfigPath(env{"XDG_CONFIG_HOME": "rel", "HOME": "/h"}.get))
}

func TestRequireEdge(t *testing.T) {
	require.ErrorContains(t, (&Settings{Token: "t"}).requireEdge(), "no edge URL")
	require.ErrorContains(t, (&Settings{Edge: "http://e", Token: "t"}).requireEdge(), "https://")
	require.ErrorContains(t, (&Settings{Edge: "https://e"}).requireEdge(), "no token")
	require.NoError(t, (&Settings{Edge: "https://e", Token: "t"}).requireEdge())
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(twoProfiles))
	f.Add([]byte("default: x\n"))
	f.Add([]byte("profiles: {a: {edge: 1}}"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cf, err := parseConfig(b, "config.yaml")
		if err == nil && cf.Default != "" {
			if _, ok := cf.Profiles[cf.Default]; !ok {
				t.Fatalf("accepted an undefined default profile %q", cf.Default)
			}
		}
	})
}
