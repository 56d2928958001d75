package transport

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// Agent information headers (docs/protocol.md, "Agent information"): a
// device may describe itself on the upgrade request, for display in the
// device list. They are optional (a qbee-v1 agent sends none) and an edge
// trusts them for nothing else.
const (
	// HeaderAgentVersion is the agent's version, such as "1.4.0".
	HeaderAgentVersion = "Tether-Agent-Version"
	// HeaderAgentPlatform is the agent's GOOS/GOARCH, with the ARM
	// version when there is one: "linux/arm64", "linux/arm/v7".
	HeaderAgentPlatform = "Tether-Agent-Platform"
	// HeaderAgentOS is the device's operating system as people call it:
	// PRETTY_NAME of os-release, such as "Debian GNU/Linux 12 (bookworm)".
	HeaderAgentOS = "Tether-Agent-OS"
)

// Bounds of the agent information values, in bytes: a longer value is
// cut to this length.
const (
	MaxAgentVersion  = 64
	MaxAgentPlatform = 64
	MaxAgentOS       = 128
)

// AgentInfo is what an agent says about itself at connect. Every field
// may be empty: the agent did not say.
type AgentInfo struct {
	Version  string `json:"version,omitempty" yaml:"version,omitempty"`
	Platform string `json:"platform,omitempty" yaml:"platform,omitempty"`
	OS       string `json:"os,omitempty" yaml:"os,omitempty"`
}

// Clean returns a with every field made fit for display by CleanAgentValue.
func (a AgentInfo) Clean() AgentInfo {
	return AgentInfo{
		Version:  CleanAgentValue(a.Version, MaxAgentVersion),
		Platform: CleanAgentValue(a.Platform, MaxAgentPlatform),
		OS:       CleanAgentValue(a.OS, MaxAgentOS),
	}
}

// Header returns the agent information headers of a, cleaned; empty
// fields are left out.
func (a AgentInfo) Header() http.Header {
	h := http.Header{}
	c := a.Clean()
	for _, f := range [...]struct{ name, v string }{
		{HeaderAgentVersion, c.Version}, {HeaderAgentPlatform, c.Platform}, {HeaderAgentOS, c.OS},
	} {
		if f.v != "" {
			h.Set(f.name, f.v)
		}
	}
	return h
}

// ParseAgentInfo reads the agent information headers of an upgrade
// request. A header sent more than once is ignored; each value is cleaned
// by CleanAgentValue. Missing headers leave their field empty.
func ParseAgentInfo(h http.Header) AgentInfo {
	one := func(name string) string {
		if v := h.Values(name); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	return AgentInfo{
		Version:  one(HeaderAgentVersion),
		Platform: one(HeaderAgentPlatform),
		OS:       one(HeaderAgentOS),
	}.Clean()
}

// CleanAgentValue makes v fit for display: it trims spaces, replaces every
// character that is not printable ASCII (a control character, a byte of
// invalid UTF-8, any non-ASCII letter) with '?', and cuts the result to
// max bytes. Cleaning a clean value changes nothing.
func CleanAgentValue(v string, max int) string {
	v = strings.TrimSpace(v)
	var b strings.Builder
	for i := 0; i < len(v) && b.Len() < max; {
		r, size := utf8.DecodeRuneInString(v[i:])
		i += size
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteByte(byte(r))
	}
	return strings.TrimSpace(b.String())
}
