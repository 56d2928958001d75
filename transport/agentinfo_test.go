package transport_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
)

func TestParseAgentInfo(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want transport.AgentInfo
	}{
		{"none, as a qbee-v1 agent sends", http.Header{}, transport.AgentInfo{}},
		{"all", http.Header{"Tether-Agent-Version": {"1.4.0"}, "Tether-Agent-Platform": {"linux/arm/v7"}, "Tether-Agent-Os": {`Debian GNU/Linux 12 (bookworm)`}},
			transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm/v7", OS: "Debian GNU/Linux 12 (bookworm)"}},
		{"spaces trimmed", http.Header{"Tether-Agent-Version": {"  1.4.0 \t"}}, transport.AgentInfo{Version: "1.4.0"}},
		{"non-ASCII and controls become ?", http.Header{"Tether-Agent-Os": {"Gr\u00fcn\x01OS \xff"}}, transport.AgentInfo{OS: "Gr?n?OS ?"}},
		{"too long: cut", http.Header{"Tether-Agent-Platform": {strings.Repeat("p", 100)}}, transport.AgentInfo{Platform: strings.Repeat("p", transport.MaxAgentPlatform)}},
		{"sent twice: ignored", http.Header{"Tether-Agent-Version": {"1", "2"}}, transport.AgentInfo{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, transport.ParseAgentInfo(tt.h))
		})
	}
}

func TestAgentInfoHeaderRoundTrip(t *testing.T) {
	a := transport.AgentInfo{Version: "1.4.0-rc.1+g1234", Platform: "linux/arm64", OS: "Ubuntu 24.04.1 LTS"}
	require.Equal(t, a, transport.ParseAgentInfo(a.Header()))
	require.Empty(t, transport.AgentInfo{}.Header(), "an agent that says nothing sends no header")
	require.Equal(t, []string{"1.4.0"}, transport.AgentInfo{Version: "1.4.0"}.Header().Values(transport.HeaderAgentVersion))
}

// FuzzCleanAgentValue: whatever a device sends, the kept value is
// printable ASCII, within its bound, trimmed, and cleaning it again
// changes nothing.
func FuzzCleanAgentValue(f *testing.F) {
	for _, s := range []string{"", "1.4.0", " linux/arm64 ", "Gr\u00fcn", "\x00\r\n", strings.Repeat("\xff", 300), "a\u2028b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, max := range []int{transport.MaxAgentVersion, transport.MaxAgentOS} {
			c := transport.CleanAgentValue(v, max)
			require.LessOrEqual(t, len(c), max)
			require.Equal(t, strings.TrimSpace(c), c)
			for i := 0; i < len(c); i++ {
				require.True(t, c[i] >= 0x20 && c[i] <= 0x7e, "byte %#x in %q", c[i], c)
			}
			require.Equal(t, c, transport.CleanAgentValue(c, max))
		}
		// Through the headers too.
		h := http.Header{}
		h.Set(transport.HeaderAgentOS, v)
		a := transport.ParseAgentInfo(h)
		require.Equal(t, transport.CleanAgentValue(v, transport.MaxAgentOS), a.OS)
	})
}

// TestDialHeaderSendsAgentInfo: the headers reach the edge as given, with
// the upgrade's own.
func TestDialHeaderSendsAgentInfo(t *testing.T) {
	_, pki := newUpgradeServer(t, nil)
	e := testbroker.NewRawEdge(t, pki)
	errc := make(chan error, 1)
	info := transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm64"}
	go func() {
		s, err := transport.DialHeader(testCtx(t), e.URL, info.Header(), pki.ClientTLS(), nil)
		if err == nil {
			s.Close()
		}
		errc <- err
	}()
	_, req := e.Accept(t)
	require.NoError(t, <-errc)
	require.Equal(t, []string{"qbee-v1"}, req.Header.Values("Sec-WebSocket-Protocol"))
	require.Equal(t, info, transport.ParseAgentInfo(req.Header))
	require.Empty(t, req.Header.Values(transport.HeaderAgentOS))
}

// TestDialHeaderRefusesBadHeaders: the headers of the upgrade itself
// cannot be replaced, and no value may break the request's framing.
func TestDialHeaderRefusesBadHeaders(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    http.Header
		want string
	}{
		{"upgrade", http.Header{"Upgrade": {"h2c"}}, "header Upgrade is set by the upgrade itself"},
		{"protocol", http.Header{"sec-websocket-protocol": {"x"}}, "header Sec-Websocket-Protocol is set by the upgrade itself"},
		{"extension", http.Header{transport.HeaderMaxStreams: {"1"}}, "Tether-Max-Streams is set by the upgrade itself"},
		{"host", http.Header{"Host": {"evil"}}, "header Host"},
		{"newline", http.Header{"X-Note": {"a\r\nX-Injected: 1"}}, "control character"},
		{"bad name", http.Header{"X Note": {"a"}}, "not a valid token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transport.DialHeader(testCtx(t), "https://127.0.0.1:1/device", tt.h, nil, nil)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
