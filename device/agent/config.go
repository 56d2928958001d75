package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tetherhq/tether/internal/limitread"
	"github.com/tetherhq/tether/internal/yamlconf"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/target"
)

// Config defaults. A zero duration in the file means the default.
const (
	// DefaultDialTimeout bounds the device's dial of a TCP tunnel target,
	// including the lookup of its name.
	DefaultDialTimeout = 10 * time.Second
	// DefaultReloadTimeout bounds reload.command. It is shorter than the
	// 15 s a client and the edge wait for a stream's answer by default, so
	// a hung command is reported as such rather than as a client timeout.
	DefaultReloadTimeout = 10 * time.Second
	// DefaultStallTimeout ends a TCP tunnel whose target (or whose
	// client, through the edge) has taken no byte for this long while data
	// waited for it. It is longer than the edge's own bound (60 s), so
	// that the edge, which knows the client, ends such a tunnel first; the
	// device's bound frees what the edge's end could not reach.
	DefaultStallTimeout = 90 * time.Second
	// MaxConfigSize bounds the configuration file.
	MaxConfigSize = 1 << 20
)

// Session limits. Each stream has a receive window (stream_window_kib):
// what the edge may send ahead on it, which the agent holds while the
// stream's target does not read. The receive budget (receive_budget_mib) is
// what the agent holds for all streams together, and max_streams ×
// stream_window_kib never exceeds it: the streams whose targets stopped
// reading can then never take the room the others need, and together they
// pin at most the budget (each also keeps its socket buffers in the
// kernel, about 1 MiB more on Linux).
const (
	// MaxFileSizeMiB is the largest files.max_size_mib: 1 PiB, whose
	// bytes still fit an int64 with room to spare.
	MaxFileSizeMiB = 1 << 30
	// DefaultReceiveBudgetMiB is the receive budget, in MiB.
	DefaultReceiveBudgetMiB = 128
	// MaxReceiveBudgetMiB is the largest receive budget, in MiB (the
	// transport's bound of 1 GiB).
	MaxReceiveBudgetMiB = 1024
	// DefaultStreamWindowKiB is each stream's receive window, in KiB: the
	// transport's default, which keeps one stream at about 20 MB/s on a
	// link with a 100 ms round trip (a window caps a stream at window ÷
	// round-trip time).
	DefaultStreamWindowKiB = transport.DefaultMaxStreamBuffer >> 10
	// MinStreamWindowKiB and MaxStreamWindowKiB bound stream_window_kib.
	MinStreamWindowKiB, MaxStreamWindowKiB = 64, 16384
	// DefaultMaxStreams is the streams open at once with the defaults:
	// the default budget over the default window (64).
	DefaultMaxStreams = DefaultReceiveBudgetMiB << 10 / DefaultStreamWindowKiB
	// MaxMaxStreams bounds max_streams.
	MaxMaxStreams = 1024
)

// DefaultAllow is the allow list used for tcp and udp when the config does
// not name one: loopback only, so a compromised edge cannot reach the LAN.
var DefaultAllow = []string{"127.0.0.1:*", "[::1]:*", "localhost:*"}

// Config is the agent's configuration file (agent.yaml):
//
//	edge: "https://edge.example.com:8443/device"
//	cert: device.crt            # paths are relative to this file
//	key: device.key
//	ca: ca.crt                  # verifies the edge's certificate
//	allow:                      # absent = loopback only; [] = nothing
//	  tcp: ["127.0.0.1:*", "localhost:*"]
//	  udp: ["127.0.0.1:*"]
//	pty: {enabled: true, shell: "", user: ""}
//	exec: {enabled: true, max_sessions: 0}  # commands without a terminal; pty.user and pty.shell apply
//	files: {read: ["/var/log"], write: ["/data/in"], max_size_mib: 4096,
//	        owner: "", group: "", umask: "022", follow_symlinks: false}
//	reload: {command: ["systemctl", "reload", "myapp"], timeout: 10s}
//	dial_timeout: 10s           # lookup and connect of a TCP target
//	stall_timeout: 90s          # end a TCP tunnel whose reader stopped
//	udp: {idle_timeout: 60s, max_packets_per_second: 10000,
//	      max_reply_ratio: 10, reply_window: 10s, reply_allowance_bytes: 65536}
//	receive_budget_mib: 128     # what all streams together may hold
//	stream_window_kib: 2048     # receive window of each stream
//	max_streams: 64             # streams open at once; budget ÷ window
//	keepalive: {interval: 10s, timeout: 30s}
//
// Allow-list rules name addresses or host names. A name is looked up on
// the device when a tunnel opens, and every address it resolves to must be
// admitted: a rule that names a host admits the addresses the name resolves
// to, except loopback, link-local and unspecified ones, which only a rule
// for the address itself (such as "127.0.0.1:*") admits. "localhost" and
// names under ".localhost" must resolve to loopback addresses only. The
// tunnel then connects to exactly the addresses that were checked.
//
// max_streams × stream_window_kib must fit in receive_budget_mib (× 1024),
// at most 1 GiB. A value left out is derived: max_streams is the budget
// over the window (at most 1024); when max_streams is set, the window is
// the largest that fits, up to 2048 KiB. When all three are set and do not
// fit, the config is refused.
//
// Load it with LoadConfig or ParseConfig, which resolve the paths and
// validate every field; a config they accept is one the agent starts with.
type Config struct {
	// Edge is the edge's device endpoint (https only). A URL without a path
	// gets "/device".
	Edge string `yaml:"edge"`
	// Cert, Key and CA are the device certificate, its private key and the
	// CA bundle that verifies the edge. After loading they are absolute or
	// relative to the working directory (resolved against the file's).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
	// Allow is the device owner's own policy, enforced on the device.
	Allow AllowConfig `yaml:"allow"`
	// PTY configures terminal sessions; they are off unless enabled.
	PTY PTYConfig `yaml:"pty"`
	// Exec configures commands without a terminal (exec streams); they
	// are off unless enabled. They run as pty.user with pty.shell.
	Exec ExecConfig `yaml:"exec"`
	// Files configures file transfers; none is allowed unless listed.
	Files FilesConfig `yaml:"files"`
	// Reload configures the reload stream and SIGHUP.
	Reload ReloadConfig `yaml:"reload"`
	// UDP tunes UDP tunnels.
	UDP UDPConfig `yaml:"udp"`
	// DialTimeout bounds the lookup of a TCP tunnel target's name and the
	// connection to it. Zero means DefaultDialTimeout.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// StallTimeout ends a TCP tunnel when a write to its target, or to its
	// stream, has made no progress for this long: the reader stopped while
	// data waited, and the tunnel holds its window and a stream slot for
	// nothing. Zero means DefaultStallTimeout; a negative value means no
	// bound.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// ReceiveBudgetMiB is what the agent may hold, in MiB, of the bytes the
	// edge sent on all streams together and their targets have not read
	// yet. 1 to 1024; 0 means DefaultReceiveBudgetMiB (128).
	ReceiveBudgetMiB int `yaml:"receive_budget_mib"`
	// StreamWindowKiB is the receive window each stream starts with, in
	// KiB: what the edge may send ahead on one stream. A larger window is
	// faster on long links; there a stream's window also grows with the
	// round trip, up to 16 MiB, while the budget has room (see
	// transport.Config.MaxStreamWindow). 64 to 16384; 0 means DefaultStreamWindowKiB (2048), or, when
	// MaxStreams is set, the largest window up to that which fits the
	// budget.
	StreamWindowKiB int `yaml:"stream_window_kib"`
	// MaxStreams caps the streams (tunnels, terminals, reloads) open at
	// once on this device's session (its transport.Config.MaxStreams);
	// more are refused with an Error "too many streams". It is the
	// device's own cap: the edge caps what it opens to a device too
	// (edge.Limits), and the lower of the two rules. 1 to 1024;
	// 0 means ReceiveBudgetMiB × 1024 ÷ StreamWindowKiB, at most 1024 (64
	// with the defaults). MaxStreams × StreamWindowKiB must not exceed
	// ReceiveBudgetMiB × 1024.
	MaxStreams int `yaml:"max_streams"`
	// KeepAlive tunes how a dead connection to the edge is noticed.
	KeepAlive KeepAliveConfig `yaml:"keepalive"`

	// Path is the file the config was loaded from ("" for ParseConfig).
	Path string `yaml:"-"`

	tcp, udp []rule         // compiled allow lists
	lines    map[string]int // key path -> line of its value, for messages
}

// AllowConfig holds the allow lists: "host:port" globs such as
// "127.0.0.1:*", "*:22" or "10.0.0.*:8000-8100". A nil list (key absent)
// means DefaultAllow; an empty list allows nothing.
type AllowConfig struct {
	TCP []string `yaml:"tcp"`
	UDP []string `yaml:"udp"`
}

// PTYConfig configures terminal sessions.
type PTYConfig struct {
	// Enabled turns on PTY (0x12) and PTY command (0x13) streams.
	Enabled bool `yaml:"enabled"`
	// Shell is the login shell; "" means the user's shell from the password
	// database.
	Shell string `yaml:"shell"`
	// User runs sessions as this user (the agent must run as root); "" means
	// the agent's own user.
	User string `yaml:"user"`
	// MaxSessions caps concurrent sessions; 0 means no cap beyond the
	// session's stream limit.
	MaxSessions int `yaml:"max_sessions"`
	// IdleTimeout ends a session without traffic for this long; 0 means
	// never.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// ExecConfig configures commands run without a terminal (`tether exec`).
type ExecConfig struct {
	// Enabled turns on exec (0x71) streams.
	Enabled bool `yaml:"enabled"`
	// MaxSessions caps concurrent commands; 0 means no cap beyond the
	// session's stream limit.
	MaxSessions int `yaml:"max_sessions"`
}

// FilesConfig configures file transfer streams (0x20, `tether cp`). With
// no read and no write list, every transfer is refused.
type FilesConfig struct {
	// Read and Write are absolute path globs ('*' does not cross '/'):
	// a path may be downloaded (uploaded) when it or a parent directory
	// matches one. Every name is opened beneath that match, so symbolic
	// links cannot lead out of it.
	Read  []string `yaml:"read"`
	Write []string `yaml:"write"`
	// MaxSizeMiB bounds an uploaded file, or an uploaded archive's files
	// together, in MiB: 0 means 4096, and at most MaxFileSizeMiB.
	MaxSizeMiB int64 `yaml:"max_size_mib"`
	// MaxEntries bounds an uploaded archive's entries; 0 means 100,000.
	MaxEntries int `yaml:"max_entries"`
	// Owner and Group own uploaded files (the agent must run as root).
	// Both "" means pty.user and its group when shells run as another user
	// (pty.enabled with pty.user), else the agent's own user and group.
	Owner string `yaml:"owner"`
	Group string `yaml:"group"`
	// Umask, in octal, is cleared from the modes of uploaded files; ""
	// means "022". setuid, setgid and sticky bits are always cleared.
	Umask string `yaml:"umask"`
	// FollowSymlinks lets paths go through symbolic links that stay
	// beneath the allowed path; false refuses any link on the way.
	FollowSymlinks bool `yaml:"follow_symlinks"`

	uid, gid int
	runAs    *files.Credential // pty.user, when shells run as another user
	umask    fs.FileMode
	chown    bool
}

// KeepAliveConfig tunes the session's keep-alive: a frame is sent every
// Interval, and a session that received nothing for Timeout is dropped and
// redialed. Zero values take the transport defaults
// (transport.DefaultKeepAliveInterval and DefaultKeepAliveTimeout, 10 s and
// 30 s). The timeout must exceed the edge's interval, or idle sessions flap.
type KeepAliveConfig struct {
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
}

// ReloadConfig configures reloads.
type ReloadConfig struct {
	// Command runs after the new config is applied; its exit status is the
	// reload's answer. Empty means no command.
	Command []string `yaml:"command"`
	// Timeout bounds Command; 0 means DefaultReloadTimeout (10 s). Longer
	// values need a client that waits longer than its default 15 s for the
	// answer; SIGHUP reloads do not wait.
	Timeout time.Duration `yaml:"timeout"`
}

// UDPConfig tunes UDP tunnels.
type UDPConfig struct {
	// IdleTimeout closes a UDP tunnel without datagrams for this long; 0
	// means the UDP handler's default.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxPacketsPerSecond caps the datagrams each tunnel sends to its
	// target; 0 means the UDP handler's default (10,000), negative means no
	// cap.
	MaxPacketsPerSecond int `yaml:"max_packets_per_second"`
	// MaxReplyRatio caps what a tunnel relays back from its target: over
	// any ReplyWindow, at most this many times the bytes sent to the
	// target, plus ReplyAllowanceBytes; a tunnel over the cap is ended with
	// a reason. 0 means the UDP handler's default (10), negative means no
	// cap.
	MaxReplyRatio int `yaml:"max_reply_ratio"`
	// ReplyWindow is the rolling window of MaxReplyRatio; 0 means the UDP
	// handler's default (10 s).
	ReplyWindow time.Duration `yaml:"reply_window"`
	// ReplyAllowanceBytes is the reply bytes per window allowed beyond the
	// ratio, so that one large answer to a small query passes; 0 means the
	// UDP handler's default (65,536), negative means none.
	ReplyAllowanceBytes int `yaml:"reply_allowance_bytes"`
}

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidConfig: the configuration file is malformed or a value is
	// invalid. The error text names the line.
	ErrInvalidConfig = errors.New("device: invalid config")
	// ErrNotAllowed: a tunnel target is outside the device's allow list.
	ErrNotAllowed = errors.New("device: refused by the allow list")
	// ErrAgentClosed: the agent was closed.
	ErrAgentClosed = errors.New("device: agent closed")
)

// ConfigError is a configuration problem, with the line it is on when
// known. Its text reads "config line 7: unknown key \"foo\"".
type ConfigError struct {
	Path string // the file, when loaded from one
	Line int    // 1-based; 0 when the problem has no single line
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config line %d: %s", e.Line, e.Msg)
	}
	return "config: " + e.Msg
}

// Is makes errors.Is(err, ErrInvalidConfig) true for every ConfigError.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// LoadConfig reads and validates the configuration file at path. Relative
// paths inside it are resolved against the file's directory.
func LoadConfig(path string) (*Config, error) {
	data, err := limitread.File(path, MaxConfigSize)
	var tl *limitread.TooLargeError
	switch {
	case errors.As(err, &tl):
		return nil, &ConfigError{Path: path, Msg: err.Error()}
	case err != nil:
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(data, filepath.Dir(path))
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.Path = path
		}
		return nil, err
	}
	c.Path = path
	return c, nil
}

// ParseConfig parses and validates a configuration. Relative paths are
// resolved against dir. Every error is a *ConfigError naming the line.
func ParseConfig(data []byte, dir string) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, &ConfigError{Msg: fmt.Sprintf("larger than %d bytes", MaxConfigSize)}
	}
	root, err := yamlconf.Parse(data)
	if err != nil {
		return nil, configError(err)
	}
	if root == nil {
		return nil, &ConfigError{Msg: "the file is empty; it needs at least edge, cert, key and ca"}
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, &ConfigError{Line: doc.Line, Msg: "the file must be a mapping of keys such as \"edge: https://...\""}
	}
	c := &Config{lines: make(map[string]int)}
	recordLines(doc, "", c.lines)
	if err := yamlconf.Decode(data, root, c); err != nil {
		return nil, configError(err)
	}
	if err := c.validate(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// recordLines records the line of every value of mapping m under its
// dotted path (list items as "allow.tcp.0"), for messages.
func recordLines(m *yaml.Node, prefix string, lines map[string]int) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		path := prefix + k.Value
		lines[path] = v.Line
		switch v.Kind {
		case yaml.SequenceNode:
			for j, item := range v.Content {
				lines[path+"."+strconv.Itoa(j)] = item.Line
			}
		case yaml.MappingNode:
			recordLines(v, path+".", lines)
		}
	}
}

// configError turns a yamlconf error into a ConfigError that reads
// "config line 3: pty.enabled: ...".
func configError(err error) error {
	var e *yamlconf.Error
	if !errors.As(err, &e) {
		return &ConfigError{Msg: err.Error()}
	}
	msg := e.Msg
	if e.Key != "" {
		msg = e.Key + ": " + msg
	}
	return &ConfigError{Line: e.Line, Msg: msg}
}

// line returns the line of the value at a dotted key path, 0 if unknown.
func (c *Config) line(path string) int { return c.lines[path] }

func (c *Config) errAt(path, format string, args ...any) error {
	return &ConfigError{Line: c.line(path), Msg: path + ": " + fmt.Sprintf(format, args...)}
}

func (c *Config) validate(dir string) error {
	if c.Edge == "" {
		return &ConfigError{Msg: `missing key "edge": the edge's device URL, such as edge: "https://edge.example.com:8443/device"`}
	}
	u, err := url.Parse(c.Edge)
	switch {
	case err != nil:
		return c.errAt("edge", "%q is not a URL: %v", c.Edge, err)
	case u.Scheme != "https":
		return c.errAt("edge", "%q must start with https:// (the agent only speaks TLS)", c.Edge)
	case u.Hostname() == "":
		return c.errAt("edge", "%q has no host name", c.Edge)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/device"
		c.Edge = u.String()
	}
	for _, f := range []struct {
		key  string
		val  *string
		hint string
	}{
		{"cert", &c.Cert, "the device certificate, such as cert: device.crt"},
		{"key", &c.Key, "the device's private key, such as key: device.key"},
		{"ca", &c.CA, "the CA that signed the edge's certificate, such as ca: ca.crt"},
	} {
		if *f.val == "" {
			return &ConfigError{Msg: fmt.Sprintf("missing key %q: %s", f.key, f.hint)}
		}
		if !filepath.IsAbs(*f.val) && dir != "" {
			*f.val = filepath.Join(dir, *f.val)
		}
	}

	var err2 error
	if c.tcp, err2 = c.compile("allow.tcp", c.Allow.TCP); err2 != nil {
		return err2
	}
	if c.udp, err2 = c.compile("allow.udp", c.Allow.UDP); err2 != nil {
		return err2
	}

	if c.PTY.Shell != "" && !filepath.IsAbs(c.PTY.Shell) {
		return c.errAt("pty.shell", "%q must be an absolute path, such as /bin/sh", c.PTY.Shell)
	}
	if c.PTY.MaxSessions < 0 {
		return c.errAt("pty.max_sessions", "%d must not be negative", c.PTY.MaxSessions)
	}
	if c.PTY.IdleTimeout < 0 {
		return c.errAt("pty.idle_timeout", "%v must not be negative", c.PTY.IdleTimeout)
	}
	if c.Exec.MaxSessions < 0 {
		return c.errAt("exec.max_sessions", "%d must not be negative", c.Exec.MaxSessions)
	}
	if (c.PTY.Enabled || c.Exec.Enabled) && c.PTY.User != "" {
		if _, err := user.Lookup(c.PTY.User); err != nil {
			return c.errAt("pty.user", "%q: no such user on this device", c.PTY.User)
		}
	}
	if err := c.validateFiles(); err != nil {
		return err
	}
	if len(c.Reload.Command) > 0 && strings.TrimSpace(c.Reload.Command[0]) == "" {
		return c.errAt("reload.command", "the program name (first item) is empty")
	}
	if c.Reload.Timeout < 0 {
		return c.errAt("reload.timeout", "%v must not be negative", c.Reload.Timeout)
	}
	if c.Reload.Timeout == 0 {
		c.Reload.Timeout = DefaultReloadTimeout
	}
	if c.KeepAlive.Interval < 0 {
		return c.errAt("keepalive.interval", "%v must not be negative", c.KeepAlive.Interval)
	}
	if c.KeepAlive.Timeout < 0 {
		return c.errAt("keepalive.timeout", "%v must not be negative", c.KeepAlive.Timeout)
	}
	if ka := c.TransportConfig(); ka.KeepAliveTimeout != 0 || ka.KeepAliveInterval != 0 {
		interval, timeout := ka.KeepAliveInterval, ka.KeepAliveTimeout
		if interval == 0 {
			interval = transport.DefaultKeepAliveInterval
		}
		if timeout == 0 {
			timeout = transport.DefaultKeepAliveTimeout
		}
		if timeout <= interval {
			return c.errAt("keepalive.timeout", "%v must be longer than the interval (%v)", timeout, interval)
		}
	}
	if c.DialTimeout < 0 {
		return c.errAt("dial_timeout", "%v must not be negative", c.DialTimeout)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if err := c.sessionLimits(); err != nil {
		return err
	}
	if c.UDP.IdleTimeout < 0 {
		return c.errAt("udp.idle_timeout", "%v must not be negative", c.UDP.IdleTimeout)
	}
	if c.UDP.ReplyWindow < 0 {
		return c.errAt("udp.reply_window", "%v must not be negative", c.UDP.ReplyWindow)
	}
	// The agent starts its session with exactly these settings; what the
	// transport refuses must be refused here, with the same words for
	// "tether-agent check" and for the agent.
	if err := transport.VerifyConfig(c.TransportConfig()); err != nil {
		return &ConfigError{Msg: fmt.Sprintf("the session settings (keepalive, max_streams, stream_window_kib, receive_budget_mib) are not usable: %v", err)}
	}
	return nil
}

// validateFiles checks the files section and resolves its owner, group
// and umask.
func (c *Config) validateFiles() error {
	f := &c.Files
	for _, k := range []struct {
		key   string
		globs []string
	}{{"files.read", f.Read}, {"files.write", f.Write}} {
		for i, g := range k.globs {
			if err := files.CheckGlobs([]string{g}); err != nil {
				line := c.line(k.key + "." + strconv.Itoa(i))
				if line == 0 {
					line = c.line(k.key)
				}
				return &ConfigError{Line: line, Msg: fmt.Sprintf("%s: %v; give an absolute path such as /var/log or /data/*/upload", k.key, err)}
			}
		}
	}
	if f.MaxSizeMiB < 0 {
		return c.errAt("files.max_size_mib", "%d must not be negative", f.MaxSizeMiB)
	}
	if f.MaxSizeMiB > MaxFileSizeMiB {
		return c.errAt("files.max_size_mib", "%d is more than %d (1 PiB)", f.MaxSizeMiB, MaxFileSizeMiB)
	}
	if f.MaxEntries < 0 {
		return c.errAt("files.max_entries", "%d must not be negative", f.MaxEntries)
	}
	f.uid, f.gid = -1, -1
	owner, ownerKey := f.Owner, "files.owner"
	if c.PTY.Enabled && c.PTY.User != "" {
		// Transfers have the rights of the user shells run as, and the
		// files they write are that user's, as a shell session's would be.
		cred, err := lookupCredential(c.PTY.User)
		if err != nil {
			return c.errAt("pty.user", "%v", err)
		}
		if cred.UID != uint32(os.Geteuid()) {
			f.runAs = cred
		}
		if owner == "" && f.Group == "" {
			owner, ownerKey = c.PTY.User, "pty.user"
		}
	}
	if owner != "" {
		u, err := user.Lookup(owner)
		if err != nil {
			return c.errAt(ownerKey, "%q: no such user on this device", owner)
		}
		f.uid, _ = strconv.Atoi(u.Uid)
		f.chown = true
		if f.Owner == "" {
			f.gid, _ = strconv.Atoi(u.Gid)
		}
	}
	if f.Group != "" {
		g, err := user.LookupGroup(f.Group)
		if err != nil {
			return c.errAt("files.group", "%q: no such group on this device", f.Group)
		}
		f.gid, _ = strconv.Atoi(g.Gid)
		f.chown = true
	}
	if r := f.runAs; r != nil {
		// Acting as that user, the agent can give files only to that user
		// and to the user's groups.
		if f.uid != -1 && uint32(f.uid) != r.UID {
			return c.errAt("files.owner", "%q: transfers run as pty.user %q, who cannot give files to another user; clear files.owner or pty.user", f.Owner, c.PTY.User)
		}
		if f.gid != -1 && uint32(f.gid) != r.GID && !slices.Contains(r.Groups, uint32(f.gid)) {
			return c.errAt("files.group", "%q: transfers run as pty.user %q, who is not in that group; name one of the user's groups, or clear files.group", f.Group, c.PTY.User)
		}
	}
	umask := f.Umask
	if umask == "" {
		umask = "022"
	}
	m, err := strconv.ParseUint(umask, 8, 32)
	if err != nil || m > 0o777 {
		return c.errAt("files.umask", "%q is not an octal umask such as \"022\"", f.Umask)
	}
	f.umask = fs.FileMode(m)
	return nil
}

// lookupCredential finds name's user and groups.
func lookupCredential(name string) (*files.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%q: no such user on this device", name)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%q has a non-numeric uid or gid (%s, %s)", name, u.Uid, u.Gid)
	}
	c := &files.Credential{UID: uint32(uid), GID: uint32(gid), Groups: []uint32{uint32(gid)}}
	ids, _ := u.GroupIds() // without the group database: the primary group alone
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != c.GID {
			c.Groups = append(c.Groups, uint32(g))
		}
	}
	return c, nil
}

// FilesConfig returns the file transfer settings for files.Server.
func (c *Config) FilesConfig() files.Config {
	f := c.Files
	return files.Config{
		Read: f.Read, Write: f.Write, MaxSize: f.MaxSizeMiB << 20, MaxEntries: f.MaxEntries,
		Chown: f.chown, UID: f.uid, GID: f.gid, Umask: f.umask, FollowSymlinks: f.FollowSymlinks,
		RunAs: f.runAs,
	}
}

// sessionLimits checks receive_budget_mib, stream_window_kib and
// max_streams, derives those left out, and keeps max_streams ×
// stream_window_kib within the budget.
func (c *Config) sessionLimits() error {
	switch {
	case c.ReceiveBudgetMiB == 0:
		c.ReceiveBudgetMiB = DefaultReceiveBudgetMiB
	case c.ReceiveBudgetMiB < 1 || c.ReceiveBudgetMiB > MaxReceiveBudgetMiB:
		return c.errAt("receive_budget_mib", "%d is outside 1 to %d", c.ReceiveBudgetMiB, MaxReceiveBudgetMiB)
	}
	if c.StreamWindowKiB != 0 && (c.StreamWindowKiB < MinStreamWindowKiB || c.StreamWindowKiB > MaxStreamWindowKiB) {
		return c.errAt("stream_window_kib", "%d is outside %d to %d", c.StreamWindowKiB, MinStreamWindowKiB, MaxStreamWindowKiB)
	}
	if c.MaxStreams != 0 && (c.MaxStreams < 1 || c.MaxStreams > MaxMaxStreams) {
		return c.errAt("max_streams", "%d is outside 1 to %d", c.MaxStreams, MaxMaxStreams)
	}
	budgetKiB := c.ReceiveBudgetMiB << 10
	switch {
	case c.StreamWindowKiB == 0 && c.MaxStreams == 0:
		c.StreamWindowKiB = min(DefaultStreamWindowKiB, budgetKiB)
	case c.StreamWindowKiB == 0:
		w := min(DefaultStreamWindowKiB, budgetKiB/c.MaxStreams)
		if w < MinStreamWindowKiB {
			return c.errAt("max_streams", "%d streams with the smallest window (%d KiB) need %d MiB, more than receive_budget_mib (%d); lower max_streams to %d or raise receive_budget_mib to %d",
				c.MaxStreams, MinStreamWindowKiB, ceilDiv(c.MaxStreams*MinStreamWindowKiB, 1024), c.ReceiveBudgetMiB,
				budgetKiB/MinStreamWindowKiB, ceilDiv(c.MaxStreams*MinStreamWindowKiB, 1024))
		}
		c.StreamWindowKiB = w
	case c.StreamWindowKiB > budgetKiB:
		return c.errAt("stream_window_kib", "one window of %d KiB does not fit in receive_budget_mib (%d); lower stream_window_kib to %d or raise receive_budget_mib to %d",
			c.StreamWindowKiB, c.ReceiveBudgetMiB, budgetKiB, ceilDiv(c.StreamWindowKiB, 1024))
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = min(MaxMaxStreams, budgetKiB/c.StreamWindowKiB)
		return nil
	}
	if need := c.MaxStreams * c.StreamWindowKiB; need > budgetKiB {
		fix := fmt.Sprintf("lower max_streams to %d", budgetKiB/c.StreamWindowKiB)
		if w := budgetKiB / c.MaxStreams; w >= MinStreamWindowKiB {
			fix += fmt.Sprintf(" or stream_window_kib to %d", w)
		}
		if ceilDiv(need, 1024) <= MaxReceiveBudgetMiB {
			fix += fmt.Sprintf(", or raise receive_budget_mib to %d", ceilDiv(need, 1024))
		}
		return c.errAt("max_streams", "%d streams × stream_window_kib %d need %d MiB of receive buffers, more than receive_budget_mib (%d); %s",
			c.MaxStreams, c.StreamWindowKiB, ceilDiv(need, 1024), c.ReceiveBudgetMiB, fix)
	}
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// compile parses an allow list; nil means DefaultAllow.
func (c *Config) compile(key string, list []string) ([]rule, error) {
	if list == nil {
		list = DefaultAllow
	}
	rules := make([]rule, 0, len(list))
	for i, s := range list {
		p, err := target.ParsePattern(s)
		if err != nil {
			line := c.line(key + "." + strconv.Itoa(i))
			if line == 0 {
				line = c.line(key)
			}
			return nil, &ConfigError{Line: line, Msg: fmt.Sprintf("%s: %q is not a host:port pattern such as \"127.0.0.1:*\" or \"10.0.0.*:8000-8100\" (%s)", key, s, patternReason(s, err))}
		}
		rules = append(rules, rule{text: s, pat: p})
	}
	return rules, nil
}

// patternReason is the part of a target.ParsePattern error after the
// pattern itself.
func patternReason(s string, err error) string {
	if _, after, ok := strings.Cut(err.Error(), strconv.Quote(s)+": "); ok {
		return after
	}
	return err.Error()
}

// TransportConfig returns the session settings the config asks for.
func (c *Config) TransportConfig() *transport.Config {
	return &transport.Config{
		MaxStreams:        c.MaxStreams,
		MaxStreamBuffer:   c.StreamWindowKiB << 10,
		MaxReceiveBuffer:  c.ReceiveBudgetMiB << 20,
		KeepAliveInterval: c.KeepAlive.Interval,
		KeepAliveTimeout:  c.KeepAlive.Timeout,
	}
}

// TCPAllow returns the effective TCP allow list, as written.
func (c *Config) TCPAllow() []string { return ruleTexts(c.tcp) }

// UDPAllow returns the effective UDP allow list, as written.
func (c *Config) UDPAllow() []string { return ruleTexts(c.udp) }

// connectionKeysChanged reports the first key whose change needs a
// restart: the edge URL, the TLS files and the session limits are used
// when the agent starts.
func (c *Config) connectionKeysChanged(old *Config) (string, bool) {
	switch {
	case c.Edge != old.Edge:
		return "edge", true
	case c.Cert != old.Cert:
		return "cert", true
	case c.Key != old.Key:
		return "key", true
	case c.CA != old.CA:
		return "ca", true
	case c.MaxStreams != old.MaxStreams:
		return "max_streams", true
	case c.StreamWindowKiB != old.StreamWindowKiB:
		return "stream_window_kib", true
	case c.ReceiveBudgetMiB != old.ReceiveBudgetMiB:
		return "receive_budget_mib", true
	case c.KeepAlive != old.KeepAlive:
		return "keepalive", true
	}
	return "", false
}
