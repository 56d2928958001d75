package agent

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/target"
)

func TestAllowLists(t *testing.T) {
	c, err := ParseConfig([]byte(`edge: https://e/device
cert: a
key: b
ca: c
allow:
  tcp: ["127.0.0.1:*", "10.0.0.*:8000-8100", "*:22"]
  udp: ["127.0.0.1:53"]
`), "")
	require.NoError(t, err)
	cases := []struct {
		proto, target string
		allowed       bool
	}{
		{"tcp", "127.0.0.1:80", true},
		{"tcp", "127.1:80", true}, // canonicalized to 127.0.0.1
		{"tcp", "0x7f.0.0.1:80", true},
		{"tcp", "[::ffff:127.0.0.1]:80", true},
		{"tcp", "127.0.0.2:80", false},
		{"tcp", "10.0.0.7:8000", true},
		{"tcp", "10.0.0.7:8101", false},
		{"tcp", "10.0.0.7.example.com:8000", false},
		{"tcp", "192.168.1.1:22", true},
		{"tcp", "192.168.1.1:25", false},
		{"tcp", "localhost:80", false}, // not in this owner's list
		{"udp", "127.0.0.1:53", true},
		{"udp", "127.0.0.1:54", false},
		{"udp", "10.0.0.7:8000", false},
	}
	for _, tc := range cases {
		t.Run(tc.proto+" "+tc.target, func(t *testing.T) {
			tg, err := target.Parse(tc.target)
			require.NoError(t, err)
			check := c.AllowTCP
			if tc.proto == "udp" {
				check = c.AllowUDP
			}
			err = check(tg)
			if tc.allowed {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrNotAllowed)
			require.Contains(t, err.Error(), "refused by the device's allow list: "+tc.proto+" "+tg.String())
			require.Contains(t, err.Error(), "allow."+tc.proto)
		})
	}
}

func TestDefaultAllowListIsLoopbackOnly(t *testing.T) {
	c, err := ParseConfig([]byte("edge: https://e/device\ncert: a\nkey: b\nca: c\n"), "")
	require.NoError(t, err)
	for _, s := range []string{"127.0.0.1:22", "[::1]:22", "localhost:8080"} {
		tg, err := target.Parse(s)
		require.NoError(t, err)
		require.NoError(t, c.AllowTCP(tg), s)
		require.NoError(t, c.AllowUDP(tg), s)
	}
	for _, s := range []string{"10.0.0.5:25", "192.168.0.1:80", "example.com:443", "127.0.0.2:22"} {
		tg, err := target.Parse(s)
		require.NoError(t, err)
		err = c.AllowTCP(tg)
		require.ErrorIs(t, err, ErrNotAllowed, s)
		require.Equal(t, "refused by the device's allow list: tcp "+tg.String()+
			" (allowed: 127.0.0.1:*, [::1]:*, localhost:*); the device's owner can add a rule under allow.tcp in the agent's config", err.Error())
	}
}
