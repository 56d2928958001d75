package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
)

const goodConfig = `edge: "https://edge.example.com:8443/device"
cert: device.crt
key: device.key
ca: /etc/tether/ca.crt
allow:
  tcp: ["127.0.0.1:*", "10.0.0.*:8000-8100"]
  udp: ["127.0.0.1:53"]
pty: {enabled: true, shell: "/bin/sh", user: "", max_sessions: 4, idle_timeout: 1h}
exec: {enabled: true, max_sessions: 3}
reload: {command: ["true"], timeout: 5s}
dial_timeout: 3s
stall_timeout: 2m
udp: {idle_timeout: 20s, max_packets_per_second: -1, max_reply_ratio: 3, reply_window: 5s, reply_allowance_bytes: -1}
max_streams: 16
stream_window_kib: 512
`

func TestParseConfigGood(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig), "/etc/tether")
	require.NoError(t, err)
	require.Equal(t, "https://edge.example.com:8443/device", c.Edge)
	require.Equal(t, "/etc/tether/device.crt", c.Cert, "relative paths resolve against the file's directory")
	require.Equal(t, "/etc/tether/device.key", c.Key)
	require.Equal(t, "/etc/tether/ca.crt", c.CA, "absolute paths stay")
	require.Equal(t, []string{"127.0.0.1:*", "10.0.0.*:8000-8100"}, c.TCPAllow())
	require.Equal(t, []string{"127.0.0.1:53"}, c.UDPAllow())
	require.True(t, c.PTY.Enabled)
	require.Equal(t, "/bin/sh", c.PTY.Shell)
	require.Equal(t, 4, c.PTY.MaxSessions)
	require.Equal(t, time.Hour, c.PTY.IdleTimeout)
	require.Equal(t, ExecConfig{Enabled: true, MaxSessions: 3}, c.Exec)
	require.Equal(t, "/bin/sh", execConfig(c).Shell, "commands run with pty.shell")
	require.Equal(t, []string{"true"}, c.Reload.Command)
	require.Equal(t, 5*time.Second, c.Reload.Timeout)
	require.Equal(t, 3*time.Second, c.DialTimeout)
	require.Equal(t, 2*time.Minute, c.StallTimeout)
	require.Equal(t, 20*time.Second, c.UDP.IdleTimeout)
	require.Equal(t, -1, c.UDP.MaxPacketsPerSecond)
	u := udpConfig(c, nil)
	require.Equal(t, [3]any{3, 5 * time.Second, -1}, [3]any{u.MaxReplyRatio, u.ReplyRatioWindow, u.ReplyAllowance},
		"the UDP handler gets max_reply_ratio, reply_window and reply_allowance_bytes")
	require.Equal(t, 16, c.TransportConfig().MaxStreams)
	require.Equal(t, 512<<10, c.TransportConfig().MaxStreamBuffer)
	require.NoError(t, transport.VerifyConfig(c.TransportConfig()))
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte("edge: https://edge:8443\ncert: a.crt\nkey: a.key\nca: ca.crt\n"), "/d")
	require.NoError(t, err)
	require.Equal(t, "https://edge:8443/device", c.Edge, "a URL without a path gets /device")
	require.Equal(t, DefaultAllow, c.TCPAllow(), "no allow list means loopback only")
	require.Equal(t, DefaultAllow, c.UDPAllow())
	require.False(t, c.PTY.Enabled, "PTY is off unless enabled")
	require.False(t, c.Exec.Enabled, "exec is off unless enabled")
	require.Equal(t, DefaultDialTimeout, c.DialTimeout)
	require.Equal(t, DefaultStallTimeout, c.StallTimeout)
	require.Equal(t, DefaultReloadTimeout, c.Reload.Timeout)
	require.Empty(t, c.Reload.Command)
	require.Equal(t, 64, c.MaxStreams)
	require.Equal(t, 64, DefaultMaxStreams)
	require.Equal(t, 2048, c.StreamWindowKiB)
	require.Equal(t, 128, c.ReceiveBudgetMiB)
	require.Equal(t, 128<<20, c.TransportConfig().MaxReceiveBuffer)
	require.NoError(t, transport.VerifyConfig(c.TransportConfig()))
}

func TestParseConfigNegativeStallTimeoutMeansNoBound(t *testing.T) {
	c, err := ParseConfig([]byte("edge: https://e/device\ncert: a\nkey: b\nca: c\nstall_timeout: -1s\n"), "")
	require.NoError(t, err)
	require.Equal(t, -time.Second, c.StallTimeout, "got %v; want it kept negative (no bound)", c.StallTimeout)
}

func TestParseConfigEmptyAllowListAllowsNothing(t *testing.T) {
	c, err := ParseConfig([]byte("edge: https://e/device\ncert: a\nkey: b\nca: c\nallow: {tcp: []}\n"), "")
	require.NoError(t, err)
	require.Empty(t, c.TCPAllow())
	err = c.AllowTCP(target.Target{Host: "127.0.0.1", Port: 22})
	require.ErrorIs(t, err, ErrNotAllowed)
	require.Contains(t, err.Error(), "allowed: nothing")
	require.Equal(t, DefaultAllow, c.UDPAllow(), "the udp list is independent")
}

func TestParseConfigErrors(t *testing.T) {
	base := "edge: https://e/device\ncert: a\nkey: b\nca: c\n" // lines 1-4
	cases := []struct {
		name string
		yaml string
		want string // the error text starts with this
		line int
	}{
		{"unknown top-level key", base + "allow: {tcp: []}\nfoo: 1\n", `config line 6: unknown key "foo"`, 6},
		{"unknown nested key", base + "pty:\n  enabled: true\n  shel: /bin/sh\n", `config line 7: unknown key "shel" in section pty (did you mean "shell"?); valid keys: enabled, idle_timeout, max_sessions, shell, user`, 7},
		{"unknown key in allow", base + "allow:\n  tpc: []\n", `config line 6: unknown key "tpc" in section allow (did you mean "tcp"?); valid keys: tcp, udp`, 6},
		{"wrong type", base + "pty:\n  enabled: maybe\n", `config line 6: pty.enabled: "maybe" is not true or false`, 6},
		{"bad duration", base + "dial_timeout: soon\n", `config line 5: dial_timeout: "soon" is not a duration, such as 30s`, 5},
		{"string for a list", base + "reload: {command: \"systemctl reload app\"}\n", "config line 5: reload.command: ", 5},
		{"list item of the wrong kind", base + "allow:\n  tcp:\n    - [1]\n", "config line 7: allow.tcp: a list is not a string", 7},
		{"bad pattern names its item's line", base + "allow:\n  tcp:\n    - 127.0.0.1:*\n    - \"127.0.0.1:99999\"\n", `config line 8: allow.tcp: "127.0.0.1:99999" is not a host:port pattern`, 8},
		{"syntax error", base + "allow: [\n", "config line 5: did not find expected node content", 5},
		{"duplicate key", base + "cert: x\n", "config line 5: ", 5},
		{"bad indentation", base + "pty:\n  enabled: true\n shell: /bin/sh\n", "config line 7: did not find expected key", 7},
		{"missing edge", "cert: a\nkey: b\nca: c\n", `config: missing key "edge"`, 0},
		{"missing key", "edge: https://e/device\ncert: a\nca: c\n", `config: missing key "key"`, 0},
		{"http edge", "edge: http://e/device\ncert: a\nkey: b\nca: c\n", "config line 1: edge: \"http://e/device\" must start with https://", 1},
		{"relative shell", base + "pty: {shell: sh}\n", "config line 5: pty.shell:", 5},
		{"negative timeout", base + "reload: {timeout: -1s}\n", "config line 5: reload.timeout:", 5},
		{"empty command", base + "reload: {command: [\"\"]}\n", "config line 5: reload.command:", 5},
		{"unknown pty user", base + "pty: {enabled: true, user: no-such-user-tether}\n", "config line 5: pty.user: \"no-such-user-tether\": no such user", 5},
		{"negative exec cap", base + "exec: {enabled: true, max_sessions: -1}\n", "config line 5: exec.max_sessions: -1 must not be negative", 5},
		{"unknown exec key", base + "exec:\n  enable: true\n", `config line 6: unknown key "enable" in section exec (did you mean "enabled"?)`, 6},
		{"unknown user for exec", base + "exec: {enabled: true}\npty: {user: no-such-user-tether}\n", "config line 6: pty.user: \"no-such-user-tether\": no such user", 6},
		{"too many streams", base + "max_streams: 5000\n", "config line 5: max_streams: 5000 is outside 1 to 1024", 5},
		{"tiny window", base + "stream_window_kib: 8\n", "config line 5: stream_window_kib: 8 is outside 64 to 16384", 5},
		{"negative reply window", base + "udp: {reply_window: -1s}\n", "config line 5: udp.reply_window: -1s must not be negative", 5},
		{"budget too large", base + "receive_budget_mib: 2048\n", "config line 5: receive_budget_mib: 2048 is outside 1 to 1024", 5},
		{"keep-alive timeout within the interval", base + "keepalive: {interval: 20s, timeout: 10s}\n", "config line 5: keepalive.timeout: 10s must be longer than the interval (20s)", 5},
		{"not a mapping", "- a\n- b\n", "config line 1: the file must be a mapping", 1},
		{"empty file", "", "config: the file is empty", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "/d")
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.True(t, strings.HasPrefix(err.Error(), tc.want), "got %q; want prefix %q", err.Error(), tc.want)
			var ce *ConfigError
			require.True(t, errors.As(err, &ce))
			if tc.line > 0 {
				require.Equal(t, tc.line, ce.Line)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(path, []byte(goodConfig), 0o600))
	c, err := LoadConfig(path)
	require.NoError(t, err)
	require.Equal(t, path, c.Path)
	require.Equal(t, filepath.Join(dir, "device.crt"), c.Cert)

	_, err = LoadConfig(filepath.Join(dir, "missing.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)

	big := make([]byte, MaxConfigSize+10)
	for i := range big {
		big[i] = '#'
	}
	require.NoError(t, os.WriteFile(path, big, 0o600))
	_, err = LoadConfig(path)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.Contains(t, err.Error(), "larger than")
}

func TestConnectionKeysChanged(t *testing.T) {
	a, err := ParseConfig([]byte(goodConfig), "/etc/tether")
	require.NoError(t, err)
	b, err := ParseConfig([]byte(strings.Replace(goodConfig, "10.0.0.*:8000-8100", "10.0.0.9:22", 1)), "/etc/tether")
	require.NoError(t, err)
	_, changed := b.connectionKeysChanged(a)
	require.False(t, changed, "allow lists may change on reload")
	c, err := ParseConfig([]byte(strings.Replace(goodConfig, "edge.example.com", "other.example.com", 1)), "/etc/tether")
	require.NoError(t, err)
	key, changed := c.connectionKeysChanged(a)
	require.True(t, changed)
	require.Equal(t, "edge", key)
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("edge: https://e\ncert: a\nkey: b\nca: c\nallow: {tcp: [\"*:*\"], udp: []}\n"))
	f.Add([]byte("allow:\n  tcp:\n    - [1, 2]\n"))
	f.Add([]byte("&a [*a, *a]"))
	f.Add([]byte("pty: !!binary aGVsbG8=\n"))
	f.Add([]byte("edge: https://e\ncert: a\nkey: b\nca: c\nmax_streams: 1024\nreceive_budget_mib: 1\n"))
	f.Add([]byte("edge: https://e\ncert: a\nkey: b\nca: c\nstream_window_kib: 16384\nreceive_budget_mib: 1024\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "/d")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
			}
			if !strings.HasPrefix(err.Error(), "config") {
				t.Fatalf("error %q does not start with config", err)
			}
			return
		}
		if !strings.HasPrefix(c.Edge, "https://") || c.Cert == "" || c.Key == "" || c.CA == "" {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		if c.DialTimeout <= 0 || c.Reload.Timeout <= 0 {
			t.Fatalf("defaults not applied: %+v", c)
		}
		if err := transport.VerifyConfig(c.TransportConfig()); err != nil {
			t.Fatalf("accepted a config the agent cannot start with: %v", err)
		}
		if c.MaxStreams*c.StreamWindowKiB > c.ReceiveBudgetMiB<<10 {
			t.Fatalf("max_streams %d × stream_window_kib %d exceed receive_budget_mib %d", c.MaxStreams, c.StreamWindowKiB, c.ReceiveBudgetMiB)
		}
	})
}

// TestSessionLimits checks the arithmetic of receive_budget_mib,
// stream_window_kib and max_streams: values left out are derived, and
// max_streams × stream_window_kib never exceeds the budget.
func TestSessionLimits(t *testing.T) {
	base := "edge: https://e/device\ncert: a\nkey: b\nca: c\n" // lines 1-4
	cases := []struct {
		name                    string
		yaml                    string
		budget, window, streams int    // the effective values
		wantErr                 string // the whole error text, when refused
	}{
		{name: "defaults", budget: 128, window: 2048, streams: 64},
		{name: "a small budget", yaml: "receive_budget_mib: 1\n", budget: 1, window: 1024, streams: 1},
		{name: "budget and window", yaml: "receive_budget_mib: 1\nstream_window_kib: 256\n", budget: 1, window: 256, streams: 4},
		{name: "streams alone narrow the window", yaml: "max_streams: 128\n", budget: 128, window: 1024, streams: 128},
		{name: "the most streams", yaml: "max_streams: 1024\n", budget: 128, window: 128, streams: 1024},
		{name: "a small window allows more streams, up to 1024", yaml: "stream_window_kib: 64\nreceive_budget_mib: 1024\n", budget: 1024, window: 64, streams: 1024},
		{name: "all three within the budget", yaml: "max_streams: 16\nstream_window_kib: 512\nreceive_budget_mib: 8\n", budget: 8, window: 512, streams: 16},
		{name: "streams and window over the default budget", yaml: "max_streams: 128\nstream_window_kib: 2048\n",
			wantErr: "config line 5: max_streams: 128 streams × stream_window_kib 2048 need 256 MiB of receive buffers, more than receive_budget_mib (128); lower max_streams to 64 or stream_window_kib to 1024, or raise receive_budget_mib to 256"},
		{name: "over the transport's 1 GiB", yaml: "max_streams: 1024\nstream_window_kib: 2048\nreceive_budget_mib: 1024\n",
			wantErr: "config line 5: max_streams: 1024 streams × stream_window_kib 2048 need 2048 MiB of receive buffers, more than receive_budget_mib (1024); lower max_streams to 512 or stream_window_kib to 1024"},
		{name: "too many streams for any window", yaml: "max_streams: 32\nreceive_budget_mib: 1\n",
			wantErr: "config line 5: max_streams: 32 streams with the smallest window (64 KiB) need 2 MiB, more than receive_budget_mib (1); lower max_streams to 16 or raise receive_budget_mib to 2"},
		{name: "a window larger than the budget", yaml: "stream_window_kib: 16384\nreceive_budget_mib: 8\n",
			wantErr: "config line 5: stream_window_kib: one window of 16384 KiB does not fit in receive_budget_mib (8); lower stream_window_kib to 8192 or raise receive_budget_mib to 16"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(base+tc.yaml), "/d")
			if tc.wantErr != "" {
				require.Error(t, err, "got %+v; want an error", c)
				require.ErrorIs(t, err, ErrInvalidConfig)
				require.Equal(t, tc.wantErr, err.Error())
				return
			}
			require.NoError(t, err)
			got := [3]int{c.ReceiveBudgetMiB, c.StreamWindowKiB, c.MaxStreams}
			require.Equal(t, [3]int{tc.budget, tc.window, tc.streams}, got, "got budget, window, streams %v; want %v", got, [3]int{tc.budget, tc.window, tc.streams})
			tc := c.TransportConfig()
			require.NoError(t, transport.VerifyConfig(tc))
			require.Equal(t, c.ReceiveBudgetMiB<<20, tc.MaxReceiveBuffer)
			require.LessOrEqual(t, tc.MaxStreams*tc.MaxStreamBuffer, tc.MaxReceiveBuffer)
		})
	}
}
