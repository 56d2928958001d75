package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tetherhq/tether/edge"
)

// webFileConfig is the web: section: the web terminal (docs/edge.md).
type webFileConfig struct {
	Enabled                 bool          `yaml:"enabled"`
	PublicURL               string        `yaml:"public_url"`
	SessionKeyFile          string        `yaml:"session_key_file"`
	SessionLifetime         time.Duration `yaml:"session_lifetime"`
	IdleTimeout             time.Duration `yaml:"idle_timeout"`
	MaxTerminalsPerSession  int           `yaml:"max_terminals_per_session"`
	MaxTerminalsPerIdentity int           `yaml:"max_terminals_per_identity"`
}

// maxWebKeyFile bounds the session key file.
const maxWebKeyFile = 4 << 10

// parseWeb checks the web: section; it returns nil when the web terminal
// is off. With loadFiles it reads the key file, which must be private to
// its owner.
func parseWeb(w webFileConfig, loadFiles bool, bad func(string, ...string) error, rel func(string) string) (*edge.WebConfig, error) {
	if !w.Enabled {
		return nil, nil
	}
	if w.PublicURL == "" {
		return nil, bad("required with enabled: the https:// address browsers open, such as https://edge.example.com", "web", "public_url")
	}
	if w.SessionKeyFile == "" {
		return nil, bad("required with enabled: a file of at least 32 random bytes, mode 0600 (head -c 32 /dev/urandom > web.key; chmod 600 web.key); every edge of a cluster needs the same one", "web", "session_key_file")
	}
	for _, d := range []struct {
		v   time.Duration
		key string
	}{{w.SessionLifetime, "session_lifetime"}, {w.IdleTimeout, "idle_timeout"}} {
		if d.v < 0 {
			return nil, bad("must not be negative (0 keeps the default)", "web", d.key)
		}
	}
	if w.MaxTerminalsPerSession < 0 {
		return nil, bad("must not be negative (0 keeps the default)", "web", "max_terminals_per_session")
	}
	if w.MaxTerminalsPerIdentity < 0 {
		return nil, bad("must not be negative (0 keeps the default)", "web", "max_terminals_per_identity")
	}
	cfg := &edge.WebConfig{PublicURL: w.PublicURL, SessionLifetime: w.SessionLifetime, IdleTimeout: w.IdleTimeout,
		MaxTerminalsPerSession: w.MaxTerminalsPerSession, MaxTerminalsPerIdentity: w.MaxTerminalsPerIdentity,
		// Checked below, once the key is read.
		Key: make([]byte, edge.MinWebKeyBytes)}
	if err := cfg.Check(); err != nil {
		return nil, bad(err.Error(), "web", "public_url")
	}
	if !loadFiles {
		return cfg, nil
	}
	path := rel(w.SessionKeyFile)
	key, err := readWebKey(path)
	if err != nil {
		return nil, bad(err.Error(), "web", "session_key_file")
	}
	cfg.Key = key
	return cfg, nil
}

// readWebKey reads the session key: at least edge.MinWebKeyBytes bytes,
// in a file that neither group nor others may read.
func readWebKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the session key: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read the session key: %v", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by other users (mode %v); run: chmod 600 %s", path, st.Mode().Perm(), path)
	}
	key, err := io.ReadAll(io.LimitReader(f, maxWebKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the session key: %v", err)
	}
	if len(key) > maxWebKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes; it should hold a random key of 32 to 64 bytes", path, maxWebKeyFile)
	}
	if len(key) < edge.MinWebKeyBytes {
		return nil, fmt.Errorf("%s holds %d bytes; the key needs at least %d random bytes (head -c 32 /dev/urandom > %s)", path, len(key), edge.MinWebKeyBytes, path)
	}
	return key, nil
}
