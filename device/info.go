package device

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/tetherhq/tether/transport"
)

// osReleaseFiles are where os-release(5) lives, in the order to try.
var osReleaseFiles = []string{"/etc/os-release", "/usr/lib/os-release"}

// maxOSRelease bounds how much of an os-release file is read.
const maxOSRelease = 64 << 10

// LocalAgentInfo describes this agent for Client.Agent: version as given,
// the platform it was built for (GOOS/GOARCH, and the ARM version on
// 32-bit ARM: "linux/arm/v7") and the operating system's PRETTY_NAME from
// os-release, when there is one.
func LocalAgentInfo(version string) transport.AgentInfo {
	info := transport.AgentInfo{Version: version, Platform: platform(buildSetting("GOARM"))}
	for _, f := range osReleaseFiles {
		if name, ok := osPrettyName(f); ok {
			info.OS = name
			break
		}
	}
	return info.Clean()
}

// platform is GOOS/GOARCH, with "/v" and the ARM version of goarm (such
// as "7", or "7,softfloat") on 32-bit ARM.
func platform(goarm string) string {
	p := runtime.GOOS + "/" + runtime.GOARCH
	if v, _, _ := strings.Cut(goarm, ","); runtime.GOARCH == "arm" && v != "" {
		p += "/v" + v
	}
	return p
}

// buildSetting returns a setting of the binary's build information.
func buildSetting(key string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// osPrettyName reads PRETTY_NAME (or else NAME) from an os-release file.
func osPrettyName(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	return parseOSRelease(io.LimitReader(f, maxOSRelease))
}

// parseOSRelease reads PRETTY_NAME, or NAME when there is no PRETTY_NAME,
// from os-release(5) text: KEY=value lines, the value maybe quoted. The
// text is UTF-8; bytes that are not are dropped, before unquoting (which
// would turn each into a 3-byte replacement character) and after.
func parseOSRelease(r io.Reader) (string, bool) {
	var name, pretty string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(strings.ToValidUTF8(sc.Text(), "")), "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = strings.ToValidUTF8(u, "") // "\xff" unquotes to a byte of its own
		} else if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		switch k {
		case "PRETTY_NAME":
			pretty = v
		case "NAME":
			name = v
		}
	}
	switch {
	case pretty != "":
		return pretty, true
	case name != "":
		return name, true
	}
	return "", false
}
