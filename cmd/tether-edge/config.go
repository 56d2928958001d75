package main

import (
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/limitread"
	"github.com/tetherhq/tether/internal/yamlconf"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// fileConfig is edge.yaml.
type fileConfig struct {
	Listen        string          `yaml:"listen"`
	TLS           tlsConfig       `yaml:"tls"`
	DeviceCA      string          `yaml:"device_ca"`
	Revoked       string          `yaml:"revoked"`
	Clients       []clientConfig  `yaml:"clients"`
	AuditLog      string          `yaml:"audit_log"`
	StateDir      string          `yaml:"state_dir"`
	MetricsListen string          `yaml:"metrics_listen"`
	LogLevel      string          `yaml:"log_level"`
	KeepAlive     keepAliveConfig `yaml:"keepalive"`
	Limits        limitsConfig    `yaml:"limits"`
	Cluster       *clusterConfig  `yaml:"cluster"`
	// EdgeID names a single edge in qbee-v1 client paths
	// (/edge/<edge ID>/device/<id>); a clustered edge uses cluster.edge_id.
	EdgeID  string        `yaml:"edge_id"`
	Devices devicesConfig `yaml:"devices"`
	// Web is the web terminal (webconfig.go).
	Web webFileConfig `yaml:"web"`
	// Recording is the recording of shells (recordingconfig.go).
	Recording *recordingFileConfig `yaml:"recording"`

	// Tokens and Roles are the policy of roles (roles.go); each clients:
	// entry is read as a token and a role bound to it.
	Tokens []tokenConfig `yaml:"tokens"`
	Roles  []roleConfig  `yaml:"roles"`
	// Auth is sign-in by SSO, user certificates and JWTs (authconfig.go).
	Auth authFileConfig `yaml:"auth"`
}

// devicesConfig is the devices: section: what the device list keeps of
// devices that disconnected.
type devicesConfig struct {
	// LastSeenTTL is how long a disconnected device stays listed; nil
	// means defaultLastSeenTTL, 0 keeps none.
	LastSeenTTL *time.Duration `yaml:"last_seen_ttl"`
	// LastSeenMax caps the records a single edge keeps in memory; 0
	// means edge.DefaultLastSeenMax.
	LastSeenMax int `yaml:"last_seen_max"`
	// LabelsFile labels devices from the edge's side (labelsfile.go).
	LabelsFile string `yaml:"labels_file"`
}

// defaultLastSeenTTL is devices.last_seen_ttl when it is not set.
const defaultLastSeenTTL = edge.DefaultLastSeenTTL

// keepAliveConfig tunes the sessions' keep-alive, as agent.yaml's does: a
// frame is sent every interval, and a session that received nothing for
// timeout is closed. Zero keeps the transport's default.
type keepAliveConfig struct {
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
}

type tlsConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

type clientConfig struct {
	Name        string      `yaml:"name"`
	TokenSHA256 string      `yaml:"token_sha256"`
	Recording   string      `yaml:"recording"` // overrides recording.mode for its shells
	Devices     []string    `yaml:"devices"`
	Allow       allowConfig `yaml:"allow"`
	// Recordings is "read" (the client may list and read the recordings
	// of the devices it may reach) or empty.
	Recordings string `yaml:"recordings"`
}

type allowConfig struct {
	TCP    []string   `yaml:"tcp"`
	UDP    []string   `yaml:"udp"`
	PTY    bool       `yaml:"pty"`
	Reload bool       `yaml:"reload"`
	Files  filesAllow `yaml:"files"`
	Exec   bool       `yaml:"exec"`
	// ExtraTypes are the stream types Tether does not define that the
	// edge relays unchanged: YAML integers (0x15 or 21) or "0x15" strings.
	ExtraTypes yaml.Node `yaml:"extra_types"`
}

// filesAllow is allow.files: true (any path the device's agent admits),
// false, or {read: [globs], write: [globs]} on canonical absolute paths.
type filesAllow struct {
	on    bool
	rules *edge.FileRules
}

func (f *filesAllow) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&f.on)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: files must be true, false or {read: [globs], write: [globs]}", n.Line)
	}
	var m struct {
		Read  []string `yaml:"read"`
		Write []string `yaml:"write"`
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k != "read" && k != "write" {
			return fmt.Errorf("line %d: files has no key %q (it takes read and write)", n.Content[i].Line, k)
		}
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	if err := wire.CheckFileGlobs(append(append([]string(nil), m.Read...), m.Write...)); err != nil {
		return fmt.Errorf("line %d: files: %v; give absolute paths such as /var/log", n.Line, err)
	}
	f.on, f.rules = true, &edge.FileRules{Read: m.Read, Write: m.Write}
	return nil
}

// limitsConfig is the limits: section; zero keeps the default. Most keys
// are edge.Limits; handshake_timeout and open_timeout are the sessions'
// (transport.Config), which the edge also takes for the TLS handshake, the
// request head, the opening message and the device's answer.
type limitsConfig struct {
	MaxStreamsPerClient int           `yaml:"max_streams_per_client"`
	MaxStreamsPerDevice int           `yaml:"max_streams_per_device"`
	HandshakeTimeout    time.Duration `yaml:"handshake_timeout"`
	OpenTimeout         time.Duration `yaml:"open_timeout"`
	MaxHeaderBytes      int           `yaml:"max_header_bytes"`
	UpgradeRate         float64       `yaml:"upgrade_rate"`
	UpgradeBurst        int           `yaml:"upgrade_burst"`
	StallTimeout        time.Duration `yaml:"stall_timeout"`
	DrainTimeout        time.Duration `yaml:"drain_timeout"`

	MaxStreamsPerClientPerDevice int           `yaml:"max_streams_per_client_per_device"`
	FirstStreamTimeout           time.Duration `yaml:"first_stream_timeout"`
	AuditTimeout                 time.Duration `yaml:"audit_timeout"`
	RejectedAuditRate            float64       `yaml:"rejected_audit_rate"`
	RejectedAuditBurst           int           `yaml:"rejected_audit_burst"`
}

// defaultDrainTimeout bounds the graceful shutdown.
const defaultDrainTimeout = 30 * time.Second

// maxConfigSize bounds edge.yaml.
const maxConfigSize = 4 << 20

// config is a loaded and checked edge.yaml, with paths made absolute.
type config struct {
	path    string
	file    fileConfig
	policy  *edge.RolePolicy
	revoked edge.Revocations
	limits  edge.Limits
	drain   time.Duration
	// transport tunes the sessions: the keep-alive, handshake_timeout and
	// open_timeout from edge.yaml.
	transport *transport.Config
	// cluster is the cluster: section; nil for a single edge.
	cluster *clusterSettings
	// lastSeenTTL and lastSeenMax are the devices: section, checked and
	// with defaults; a zero TTL keeps no last-seen records.
	lastSeenTTL time.Duration
	lastSeenMax int
	// web is the web: section, checked; nil when the web terminal is off.
	web *edge.WebConfig
	// webSignOuts, lastSeenFile and exchangedFile are the files a single
	// edge with a state_dir keeps its web sign-outs, last-seen records and
	// exchanged ID tokens in; empty keeps them in memory (stateFiles).
	webSignOuts, lastSeenFile, exchangedFile string
	// recording is the recording: section, checked; nil when absent.
	recording *edge.RecordingConfig
	// auth is the auth: section, checked; nil without one.
	auth *edge.AuthConfig
	// warnings are what the edge logs at start: settings that work but
	// that an operator should know about.
	warnings []string
}

// configError names the file, the line and the key of a bad value.
type configError struct {
	path string
	line int
	key  string
	msg  string
}

func (e *configError) Error() string {
	loc := e.path
	if e.line > 0 {
		loc += ":" + strconv.Itoa(e.line)
	}
	if e.key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.key, e.msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.msg)
}

// loadConfig reads and checks edge.yaml, and loads the files it names.
func loadConfig(path string) (*config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	return parseConfig(path, data, true)
}

// readConfigFile reads edge.yaml, at most maxConfigSize bytes of it.
func readConfigFile(path string) ([]byte, error) {
	data, err := limitread.File(path, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return data, nil
}

// parseConfig checks data; with loadFiles it also reads the certificate,
// key and revocation files it names.
func parseConfig(path string, data []byte, loadFiles bool) (*config, error) {
	c := &config{path: path}
	root, err := yamlconf.Parse(data)
	if err != nil {
		return nil, fileError(path, err)
	}
	if root == nil {
		return nil, fmt.Errorf("%s: the file is empty; docs/edge.md lists the keys, with an example", path)
	}
	if err := yamlconf.Decode(data, root, &c.file); err != nil {
		return nil, fileError(path, err)
	}
	bad := func(msg string, keys ...string) error {
		return &configError{path: path, line: lineOf(root, keys...), key: strings.Join(keys, "."), msg: msg}
	}
	fc := &c.file
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if fc.Listen == "" {
		return nil, bad("required: the address to listen on, such as \"0.0.0.0:8443\"", "listen")
	}
	if fc.TLS.Cert == "" {
		return nil, bad("required: the edge's certificate file", "tls", "cert")
	}
	if fc.TLS.Key == "" {
		return nil, bad("required: the edge's key file", "tls", "key")
	}
	if fc.DeviceCA == "" {
		return nil, bad("required: the CA file that signs device certificates", "device_ca")
	}
	fc.TLS.Cert, fc.TLS.Key, fc.DeviceCA = rel(fc.TLS.Cert), rel(fc.TLS.Key), rel(fc.DeviceCA)
	fc.Revoked, fc.StateDir = rel(fc.Revoked), rel(fc.StateDir)
	if fc.AuditLog != "-" {
		fc.AuditLog = rel(fc.AuditLog)
	}
	switch fc.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return nil, bad(fmt.Sprintf("%q is not one of debug, info, warn, error", fc.LogLevel), "log_level")
	}

	rules := make([]edge.ClientRule, 0, len(fc.Clients))
	for i, cl := range fc.Clients {
		k := func(keys ...string) []string { return append([]string{"clients", strconv.Itoa(i)}, keys...) }
		if cl.Name == "" {
			return nil, bad("required: a name for the client", k("name")...)
		}
		var sum [sha256.Size]byte
		var err error
		if cl.TokenSHA256 == "" && !fc.Auth.configured() {
			return nil, bad("required: the SHA-256 of the client's token (`tether-edge token`); an entry without one, for a person who signs in by SSO, needs an auth: section (docs/edge.md, auth)", k("token_sha256")...)
		}
		if cl.TokenSHA256 != "" {
			// Without token_sha256, the entry is the rule of a person
			// or automation of that name (auth:).
			sum, err = edge.ParseTokenSHA256(cl.TokenSHA256)
			if err != nil {
				return nil, bad(tokenHashProblem(cl.TokenSHA256, err), k("token_sha256")...)
			}
		}
		if len(cl.Devices) == 0 {
			return nil, bad("required: device ID globs, such as [\"*\"]", k("devices")...)
		}
		for j, g := range cl.Devices {
			if _, err := edge.NewStaticPolicy([]edge.ClientRule{{Name: "x", Devices: []string{g}}}); err != nil {
				return nil, bad(strings.TrimPrefix(err.Error(), `client "x": `), k("devices", strconv.Itoa(j))...)
			}
		}
		a, err := parseAllow(cl.Allow, k("allow"), bad)
		if err != nil {
			return nil, err
		}
		r := edge.ClientRule{Name: cl.Name, TokenSHA256: sum, Devices: cl.Devices, TCP: a.TCP, UDP: a.UDP,
			PTY: a.PTY, Reload: a.Reload, Files: a.Files, FileRules: a.FileRules, Exec: a.Exec, ExtraTypes: a.ExtraTypes}
		if r.Recording, err = parseRecordingMode(cl.Recording); err != nil {
			return nil, bad(err.Error(), k("recording")...)
		}
		switch cl.Recordings {
		case "":
		case "read":
			r.Recordings = true
		default:
			return nil, bad(fmt.Sprintf("%q: the one right on recordings is read (recordings: read), or leave the key out", cl.Recordings), k("recordings")...)
		}
		rules = append(rules, r)
	}
	if _, err := edge.NewStaticPolicy(rules); err != nil {
		return nil, bad(err.Error(), "clients")
	}
	if c.policy, err = parseRoles(fc, rules, bad, rel); err != nil {
		return nil, err
	}

	l := fc.Limits
	checks := []struct {
		neg bool
		key string
	}{
		{l.MaxStreamsPerClient < 0, "max_streams_per_client"},
		{l.MaxStreamsPerDevice < 0, "max_streams_per_device"},
		{l.HandshakeTimeout < 0, "handshake_timeout"},
		{l.OpenTimeout < 0, "open_timeout"},
		{l.MaxHeaderBytes < 0, "max_header_bytes"},
		{l.UpgradeRate < 0, "upgrade_rate"},
		{l.UpgradeBurst < 0, "upgrade_burst"},
		{l.StallTimeout < 0, "stall_timeout"},
		{l.DrainTimeout < 0, "drain_timeout"},
		{l.MaxStreamsPerClientPerDevice < 0, "max_streams_per_client_per_device"},
		{l.FirstStreamTimeout < 0, "first_stream_timeout"},
		{l.AuditTimeout < 0, "audit_timeout"},
		{l.RejectedAuditRate < 0, "rejected_audit_rate"},
		{l.RejectedAuditBurst < 0, "rejected_audit_burst"},
	}
	for _, ch := range checks {
		if ch.neg {
			return nil, bad("must not be negative (0 keeps the default)", "limits", ch.key)
		}
	}
	if l.MaxStreamsPerDevice > transport.DefaultMaxStreams {
		return nil, bad(fmt.Sprintf("at most %d, the session's stream cap that sizes its buffers", transport.DefaultMaxStreams), "limits", "max_streams_per_device")
	}
	deviceCap := l.MaxStreamsPerDevice
	if deviceCap == 0 {
		deviceCap = transport.DefaultMaxStreams
	}
	if l.MaxStreamsPerClientPerDevice > deviceCap {
		return nil, bad(fmt.Sprintf("%d is more than the device's cap (max_streams_per_device, %d): one client would be able to take every stream of a device", l.MaxStreamsPerClientPerDevice, deviceCap), "limits", "max_streams_per_client_per_device")
	}
	if l.MaxStreamsPerClient > transport.DefaultMaxStreams {
		return nil, bad(fmt.Sprintf("at most %d, the session's stream cap that sizes its buffers", transport.DefaultMaxStreams), "limits", "max_streams_per_client")
	}
	c.limits = edge.Limits{
		MaxStreamsPerClientSession: l.MaxStreamsPerClient, MaxStreamsPerDevice: l.MaxStreamsPerDevice,
		MaxHeaderBytes: l.MaxHeaderBytes,
		UpgradeRate:    l.UpgradeRate, UpgradeBurst: l.UpgradeBurst, StallTimeout: l.StallTimeout,
		MaxStreamsPerClientPerDevice: l.MaxStreamsPerClientPerDevice, FirstStreamTimeout: l.FirstStreamTimeout,
		AuditTimeout: l.AuditTimeout, RejectAuditRate: l.RejectedAuditRate, RejectAuditBurst: l.RejectedAuditBurst,
	}
	ka := fc.KeepAlive
	if ka.Interval < 0 {
		return nil, bad(fmt.Sprintf("%v must not be negative (0 keeps the default, %v)", ka.Interval, transport.DefaultKeepAliveInterval), "keepalive", "interval")
	}
	if ka.Timeout < 0 {
		return nil, bad(fmt.Sprintf("%v must not be negative (0 keeps the default, %v)", ka.Timeout, transport.DefaultKeepAliveTimeout), "keepalive", "timeout")
	}
	interval, timeout := cmp.Or(ka.Interval, transport.DefaultKeepAliveInterval), cmp.Or(ka.Timeout, transport.DefaultKeepAliveTimeout)
	if timeout <= interval {
		return nil, bad(fmt.Sprintf("%v must be longer than the interval (%v), or idle sessions are cut", timeout, interval), "keepalive", "timeout")
	}
	c.transport = &transport.Config{KeepAliveInterval: ka.Interval, KeepAliveTimeout: ka.Timeout,
		HandshakeTimeout: l.HandshakeTimeout, OpenTimeout: l.OpenTimeout}
	c.drain = l.DrainTimeout
	if c.drain == 0 {
		c.drain = defaultDrainTimeout
	}
	c.lastSeenTTL, c.lastSeenMax = defaultLastSeenTTL, fc.Devices.LastSeenMax
	if t := fc.Devices.LastSeenTTL; t != nil {
		if *t < 0 {
			return nil, bad(fmt.Sprintf("%v must not be negative (0 keeps no disconnected devices; the default is %v)", *t, defaultLastSeenTTL), "devices", "last_seen_ttl")
		}
		c.lastSeenTTL = *t
	}
	if c.lastSeenMax < 0 {
		return nil, bad(fmt.Sprintf("%d must not be negative (0 keeps the default, %d)", c.lastSeenMax, edge.DefaultLastSeenMax), "devices", "last_seen_max")
	}
	if fc.Cluster == nil && hasKey(root, "cluster") {
		return nil, bad("empty: fill in edge_id, peer_listen, peer_ca, peer_cert and nats (see docs/cluster.md), or remove the section for a single edge", "cluster")
	}
	if fc.EdgeID != "" {
		if err := certs.ValidDeviceID(fc.EdgeID); err != nil {
			return nil, bad(fmt.Sprintf("%q is not a valid edge ID: 1 to 128 letters, digits, '.', '-', '_' and ':'", fc.EdgeID), "edge_id")
		}
		if fc.Cluster != nil {
			return nil, bad("a clustered edge is named by cluster.edge_id; remove the top-level edge_id", "edge_id")
		}
	}
	if fc.Cluster != nil {
		c.cluster, c.warnings, err = parseCluster(fc.Cluster, fc.Listen, fc.DeviceCA, loadFiles, bad, rel)
		if err != nil {
			return nil, err
		}
	}
	if c.web, err = parseWeb(fc.Web, loadFiles, bad, rel); err != nil {
		return nil, err
	}
	if c.recording, err = parseRecording(fc.Recording, bad, rel); err != nil {
		return nil, err
	}
	if c.auth, err = parseAuth(fc.Auth, fc.DeviceCA, loadFiles, bad, rel); err != nil {
		return nil, err
	}
	c.stateFiles(fc)
	if !loadFiles {
		return c, nil
	}

	if _, err := tls.LoadX509KeyPair(fc.TLS.Cert, fc.TLS.Key); err != nil {
		return nil, bad(fmt.Sprintf("cannot load the certificate and key: %v", err), "tls")
	}
	if _, err := certs.LoadPool(fc.DeviceCA); err != nil {
		return nil, bad(err.Error(), "device_ca")
	}
	if c.revoked, err = loadRevoked(fc.Revoked); err != nil {
		return nil, bad(err.Error(), "revoked")
	}
	if fc.StateDir != "" {
		if st, err := os.Stat(fc.StateDir); err != nil || !st.IsDir() {
			return nil, bad(fmt.Sprintf("%s is not a directory; make it, private to the edge's user: install -d -m 0700 %s", fc.StateDir, fc.StateDir), "state_dir")
		}
	}
	return c, nil
}

// stateFiles sets the files a single edge with a state_dir keeps its
// state in, and warns of what a single edge without one forgets when it
// restarts. A cluster keeps all of it in JetStream, for every edge.
func (c *config) stateFiles(fc *fileConfig) {
	if fc.Cluster != nil {
		return
	}
	sso := c.auth != nil && c.auth.OIDC != nil
	if fc.StateDir == "" {
		if c.web != nil {
			c.warnings = append(c.warnings, "state_dir is not set: this edge keeps its web sign-outs in memory, and after a restart a signed-out session works again until its cookie expires")
		}
		if sso {
			c.warnings = append(c.warnings, "state_dir is not set: this edge keeps the ID tokens exchanged for certificates in memory, and after a restart a copy of one could be exchanged again until it expires")
		}
		return
	}
	if c.web != nil {
		c.webSignOuts = filepath.Join(fc.StateDir, "web-signouts")
	}
	if c.lastSeenTTL > 0 {
		c.lastSeenFile = filepath.Join(fc.StateDir, "last-seen.jsonl")
	}
	if sso {
		c.exchangedFile = filepath.Join(fc.StateDir, "exchanged-id-tokens")
	}
}

// extraTypeError is a bad entry of allow.extra_types.
type extraTypeError struct {
	index int
	msg   string
}

func (e *extraTypeError) Error() string { return e.msg }

// parseExtraTypes reads allow.extra_types: a list (absent or null: none) whose
// entries are YAML integers (0x15, 21) or strings "0x15", each naming a
// type edge.ValidExtraType accepts, listed once.
func parseExtraTypes(list yaml.Node) ([]wire.MsgType, error) {
	switch {
	case list.Kind == 0, list.Kind == yaml.ScalarNode && list.Tag == "!!null":
		return nil, nil
	case list.Kind == yaml.SequenceNode:
	default:
		return nil, errors.New("want a list of stream type numbers, such as [0x15]")
	}
	var out []wire.MsgType
	seen := make(map[wire.MsgType]bool)
	for i, n := range list.Content {
		t, err := parseExtraType(n)
		if err == nil {
			err = edge.ValidExtraType(t)
		}
		if err == nil && seen[t] {
			err = fmt.Errorf("0x%02x is listed twice", uint8(t))
		}
		if err != nil {
			return nil, &extraTypeError{index: i, msg: err.Error()}
		}
		seen[t] = true
		out = append(out, t)
	}
	return out, nil
}

// parseExtraType reads one stream type number: a YAML integer, or a
// string of "0x" and one or two hex digits.
func parseExtraType(n *yaml.Node) (wire.MsgType, error) {
	const want = "want a stream type number from 0 to 255, such as 0x15"
	if n.Kind != yaml.ScalarNode {
		return 0, errors.New(want)
	}
	var v uint64
	switch n.Tag {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil || i < 0 || i > 0xff {
			return 0, fmt.Errorf("%s is not %s", n.Value, want[5:])
		}
		v = uint64(i)
	case "!!str":
		h, ok := strings.CutPrefix(strings.ToLower(n.Value), "0x")
		var err error
		if ok && len(h) >= 1 && len(h) <= 2 {
			v, err = strconv.ParseUint(h, 16, 8)
		}
		if !ok || len(h) < 1 || len(h) > 2 || err != nil {
			return 0, fmt.Errorf("%q is not a type number: %s (names are not accepted: a type Tether does not define has none)", truncate(n.Value, 40), want)
		}
	default:
		return 0, fmt.Errorf("%q: %s", truncate(n.Value, 40), want)
	}
	return wire.MsgType(v), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// loadRevoked reads the revocation list; no file configured means none.
func loadRevoked(path string) (edge.Revocations, error) {
	if path == "" {
		return edge.Revocations{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the revocation list: %v (create an empty file if nothing is revoked)", err)
	}
	defer f.Close()
	r, err := edge.ParseRevocations(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return r, nil
}

// tokenHashProblem explains a token_sha256 value that is not a SHA-256 in
// hex. A value shaped like a bearer token (one word of 16 or more
// printable characters) was most likely pasted instead of its hash: say
// so, and never repeat the value, which may be a secret.
func tokenHashProblem(v string, err error) string {
	const howTo = "store the token_sha256 line that `tether-edge token` prints, or the output of `tether-edge token hash < TOKEN_FILE` for a token you have, and keep the token itself secret"
	if rest, ok := strings.CutPrefix(strings.TrimSpace(v), "token_sha256:"); ok && len(strings.Trim(strings.TrimSpace(rest), `"`)) == 64 {
		return "the value holds the whole `token_sha256: \"...\"` line; keep only the 64 hex characters in quotes"
	}
	if looksLikeToken(v) {
		return "this looks like a token, not its sha256 (" + strconv.Itoa(len(v)) + " characters, not 64 hex): " + howTo
	}
	return err.Error() + "; " + howTo
}

// looksLikeToken reports a single word of 16 or more printable characters.
func looksLikeToken(v string) bool {
	if len(v) < 16 {
		return false
	}
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

// fileError turns a yamlconf error into "path:line: key: message".
func fileError(path string, err error) error {
	var e *yamlconf.Error
	if errors.As(err, &e) {
		return &configError{path: path, line: e.Line, key: e.Key, msg: e.Msg}
	}
	return fmt.Errorf("%s: %w", path, err)
}

// hasKey reports whether the document's top-level mapping has key.
func hasKey(root *yaml.Node, key string) bool {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// lineOf returns the line of the value at keys (mapping keys or sequence
// indexes) in the document, or of the deepest part of it that exists.
func lineOf(root *yaml.Node, keys ...string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, k := range keys {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
					line = n.Content[i].Line
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(k); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
				line = next.Line
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}
