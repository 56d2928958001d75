package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// fakeResolver answers from a table that the test controls and counts the
// lookups of each name. A name outside the table is "no such host".
type fakeResolver struct {
	mu sync.Mutex
	// mu guards the following.
	names   map[string][]string
	lookups map[string]int
}

func newFakeResolver(names map[string][]string) *fakeResolver {
	return &fakeResolver{names: names, lookups: make(map[string]int)}
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if network != "ip" {
		return nil, fmt.Errorf("fake resolver: network %q; want \"ip\"", network)
	}
	r.lookups[host]++
	list, ok := r.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(list))
	for i, s := range list {
		out[i] = netip.MustParseAddr(s)
	}
	return out, nil
}

func (r *fakeResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[host]
}

func TestAuthorizeResolvesAndChecksEveryAddress(t *testing.T) {
	c, err := ParseConfig([]byte(`edge: https://e/device
cert: a
key: b
ca: c
allow:
  tcp: ["gw.lan:8080", "db.lan:9000", "127.0.0.1:9000", "localhost:*", "10.0.0.*:*", "nx.lan:1"]
`), "")
	require.NoError(t, err)
	const allowed = "gw.lan:8080, db.lan:9000, 127.0.0.1:9000, localhost:*, 10.0.0.*:*, nx.lan:1"
	refusedAs := func(tg, host, addr, kind, suggest string) string {
		return "refused by the device's allow list: tcp " + tg + ": " + host + " resolved to " + addr + ", a " + kind +
			" address, which a rule naming a host does not admit (allowed: " + allowed + "); if the device's DNS is wrong, fix it; " +
			"if the owner means to allow it, add a rule for the address itself, such as \"" + suggest + "\", under allow.tcp in the agent's config"
	}
	cases := []struct {
		name     string
		target   string
		resolves []string // what the name resolves to
		want     []string // the addresses to dial
		wantErr  string   // the whole error text
		lookups  int      // 1 unless the target is refused before a lookup, or is an IP
	}{
		{name: "a LAN address", target: "gw.lan:8080", resolves: []string{"192.168.1.10"}, want: []string{"192.168.1.10"}, lookups: 1},
		{name: "every LAN address, in order", target: "gw.lan:8080", resolves: []string{"192.168.1.10", "fd00::10"}, want: []string{"192.168.1.10", "fd00::10"}, lookups: 1},
		{name: "loopback", target: "gw.lan:8080", resolves: []string{"127.0.0.1"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "127.0.0.1", "loopback", "127.0.0.1:8080")},
		{name: "loopback after a LAN address", target: "gw.lan:8080", resolves: []string{"192.168.1.10", "127.0.0.5"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "127.0.0.5", "loopback", "127.0.0.5:8080")},
		{name: "IPv4-mapped loopback", target: "gw.lan:8080", resolves: []string{"::ffff:127.0.0.1"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "127.0.0.1", "loopback", "127.0.0.1:8080")},
		{name: "IPv6 loopback", target: "gw.lan:8080", resolves: []string{"::1"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "::1", "loopback", "[::1]:8080")},
		{name: "link-local", target: "gw.lan:8080", resolves: []string{"169.254.169.254"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "169.254.169.254", "link-local", "169.254.169.254:8080")},
		{name: "IPv6 link-local", target: "gw.lan:8080", resolves: []string{"fe80::1"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "fe80::1", "link-local", "[fe80::1]:8080")},
		{name: "unspecified", target: "gw.lan:8080", resolves: []string{"0.0.0.0"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "0.0.0.0", "unspecified", "0.0.0.0:8080")},
		{name: "IPv6 unspecified", target: "gw.lan:8080", resolves: []string{"::"}, lookups: 1,
			wantErr: refusedAs("gw.lan:8080", "gw.lan", "::", "unspecified", "[::]:8080")},
		{name: "loopback admitted by a rule for the address", target: "db.lan:9000", resolves: []string{"127.0.0.1"}, want: []string{"127.0.0.1"}, lookups: 1},
		{name: "loopback that no address rule admits", target: "db.lan:9000", resolves: []string{"127.0.0.2"}, lookups: 1,
			wantErr: refusedAs("db.lan:9000", "db.lan", "127.0.0.2", "loopback", "127.0.0.2:9000")},
		{name: "localhost on loopback", target: "localhost:22", resolves: []string{"127.0.0.1", "::1"}, want: []string{"127.0.0.1", "::1"}, lookups: 1},
		{name: "localhost elsewhere, even where a rule allows", target: "localhost:22", resolves: []string{"10.0.0.5"}, lookups: 1,
			wantErr: "refused by the device's allow list: tcp localhost:22: localhost resolved to 10.0.0.5, which is not a loopback address, and localhost must stay on this device; the device's owner should fix its resolver (/etc/hosts)"},
		{name: "a name outside the list is not looked up", target: "other.lan:8080", resolves: []string{"192.168.1.10"}, lookups: 0,
			wantErr: "refused by the device's allow list: tcp other.lan:8080 (allowed: " + allowed + "); the device's owner can add a rule under allow.tcp in the agent's config"},
		{name: "no such host", target: "nx.lan:1", lookups: 1,
			wantErr: "cannot resolve nx.lan on the device: lookup nx.lan: no such host; check the name and the device's DNS (/etc/resolv.conf, /etc/hosts)"},
		{name: "an address target needs no lookup", target: "10.0.0.7:5", want: []string{"10.0.0.7"}, lookups: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := target.Parse(tc.target)
			require.NoError(t, err)
			names := map[string][]string{}
			if tc.resolves != nil {
				names[tg.Host] = tc.resolves
			}
			res := newFakeResolver(names)
			got, err := c.AuthorizeTCP(context.Background(), res, tg)
			require.Equal(t, tc.lookups, res.count(tg.Host), "lookups of %s", tg.Host)
			if tc.wantErr != "" {
				require.Error(t, err, "got addresses %v; want an error", got)
				require.Equal(t, tc.wantErr, err.Error())
				if strings.HasPrefix(tc.wantErr, "refused") {
					require.ErrorIs(t, err, ErrNotAllowed)
				}
				return
			}
			require.NoError(t, err)
			gotText := make([]string, len(got))
			for i, a := range got {
				gotText[i] = a.String()
			}
			require.Equal(t, tc.want, gotText)
		})
	}
}

// TestAgentNameThatResolvesToLoopbackIsRefused is the DNS attack: the
// owner allows gw.lan, and whoever answers the device's DNS points gw.lan
// at a loopback service that the address rules keep out.
func TestAgentNameThatResolvesToLoopbackIsRefused(t *testing.T) {
	var reached atomic.Int32
	addr := testutil.TCPServer(t, func(c *net.TCPConn) { reached.Add(1) })
	_, port, _ := net.SplitHostPort(addr)
	udpTarget, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer udpTarget.Close()
	_, udpPort, _ := net.SplitHostPort(udpTarget.LocalAddr().String())

	res := newFakeResolver(map[string][]string{"gw.lan": {"127.0.0.1"}})
	_, edge := startAgent(t, fmt.Sprintf("allow:\n  tcp: [\"gw.lan:%s\"]\n  udp: [\"gw.lan:%s\"]\n", port, udpPort),
		func(a *Agent) { a.Resolver = res })

	_, err = openWithin(t, edge, wire.MsgTCP, "gw.lan:"+port)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re, "got %v; want an Error answer", err)
	require.Equal(t, "refused by the device's allow list: tcp gw.lan:"+port+": gw.lan resolved to 127.0.0.1, a loopback address, "+
		"which a rule naming a host does not admit (allowed: gw.lan:"+port+"); if the device's DNS is wrong, fix it; "+
		"if the owner means to allow it, add a rule for the address itself, such as \"127.0.0.1:"+port+"\", under allow.tcp in the agent's config", re.Reason)
	require.Equal(t, int32(0), reached.Load(), "the loopback service was reached")

	_, err = openWithin(t, edge, wire.MsgUDP, "0:gw.lan:"+udpPort)
	require.ErrorAs(t, err, &re, "got %v; want an Error answer", err)
	require.Contains(t, re.Reason, "refused by the device's allow list: udp gw.lan:"+udpPort+": gw.lan resolved to 127.0.0.1, a loopback address")
	require.Contains(t, re.Reason, "under allow.udp")
}

// TestAgentNameIsDialedAtTheCheckedAddress: a name is looked up once, and
// the tunnel reaches the address that was checked. Only the test's
// resolver knows gw.lan, and the targets listen on 127.0.0.2 alone, so a
// second lookup or a dial by name could not reach them.
func TestAgentNameIsDialedAtTheCheckedAddress(t *testing.T) {
	addr := testutil.TCPServerAt(t, "127.0.0.2:0", testutil.EchoThenBye)
	_, port, _ := net.SplitHostPort(addr)
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	require.NoError(t, err)
	defer pc.Close()
	_, udpPort, _ := net.SplitHostPort(pc.LocalAddr().String())

	res := newFakeResolver(map[string][]string{"gw.lan": {"127.0.0.2"}})
	_, edge := startAgent(t, fmt.Sprintf("allow:\n  tcp: [\"gw.lan:%s\", \"127.0.0.2:%s\"]\n  udp: [\"gw.lan:%s\", \"127.0.0.2:%s\"]\n", port, port, udpPort, udpPort),
		func(a *Agent) { a.Resolver = res })

	st, err := openWithin(t, edge, wire.MsgTCP, "gw.lan:"+port)
	require.NoError(t, err)
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(st, "ping")
	require.NoError(t, err)
	require.NoError(t, st.CloseWrite())
	got, err := io.ReadAll(st)
	require.NoError(t, err)
	require.Equal(t, "pingbye", string(got))
	require.Equal(t, 1, res.count("gw.lan"), "lookups of gw.lan for one TCP tunnel")

	ust, err := openWithin(t, edge, wire.MsgUDP, "0:gw.lan:"+udpPort)
	require.NoError(t, err)
	defer ust.Close()
	p := pc.LocalAddr().(*net.UDPAddr).Port
	_, err = ust.Write([]byte{byte(p >> 8), byte(p), 0, 4, 'p', 'i', 'n', 'g'})
	require.NoError(t, err)
	_ = pc.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 16)
	n, _, err := pc.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf[:n]))
	require.Equal(t, 2, res.count("gw.lan"), "lookups of gw.lan after one TCP and one UDP tunnel")
}
