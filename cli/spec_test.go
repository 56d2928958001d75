package cli

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseForwardSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    forwardSpec
		wantErr string
	}{
		{in: "8080:127.0.0.1:80", want: forwardSpec{Local: "127.0.0.1:8080", Remote: "127.0.0.1:80"}},
		{in: "0:127.0.0.1:80", want: forwardSpec{Local: "127.0.0.1:0", Remote: "127.0.0.1:80"}},
		{in: "127.0.0.1:0:127.0.0.1:5432", want: forwardSpec{Local: "127.0.0.1:0", Remote: "127.0.0.1:5432"}},
		{in: "*:2222:127.0.0.1:22", want: forwardSpec{Local: ":2222", Remote: "127.0.0.1:22"}},
		{in: "0.0.0.0:2222:localhost:22", want: forwardSpec{Local: "0.0.0.0:2222", Remote: "localhost:22"}},
		{in: "[::1]:8080:[::1]:80", want: forwardSpec{Local: "[::1]:8080", Remote: "[::1]:80"}},
		{in: "8080:[fe80::1]:80", want: forwardSpec{Local: "127.0.0.1:8080", Remote: "[fe80::1]:80"}},
		{in: "8080:127.1:80", want: forwardSpec{Local: "127.0.0.1:8080", Remote: "127.0.0.1:80"}},
		{in: "8080:Router.LAN:80", want: forwardSpec{Local: "127.0.0.1:8080", Remote: "router.lan:80"}},
		{in: "8080:127.0.0.1", wantErr: "[BIND:]LPORT:HOST:RPORT"},
		{in: "a:b:c:d:e", wantErr: "[BIND:]LPORT:HOST:RPORT"},
		{in: "x:127.0.0.1:80", wantErr: "local port"},
		{in: "127.0.0.1:0:127.0.0.1", wantErr: "want [BIND:]LPORT:HOST:RPORT"}, // no RPORT
		{in: "70000:127.0.0.1:80", wantErr: "local port"},
		{in: "-1:127.0.0.1:80", wantErr: "local port"},
		{in: "8080:127.0.0.1:0", wantErr: "remote"},
		{in: "8080:127.0.0.1:http", wantErr: "remote"},
		{in: "8080::80", wantErr: "remote"},
		{in: ":8080:127.0.0.1:80", wantErr: "empty bind"},
		{in: "[::1:8080:127.0.0.1:80", wantErr: "missing ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseForwardSpec(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseTarget(t *testing.T) {
	got, err := parseTarget("0x7f.0.0.1:22")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:22", got)
	_, err = parseTarget("::1:22")
	require.ErrorContains(t, err, "brackets")
	_, err = parseTarget("host")
	require.ErrorContains(t, err, "HOST:PORT")
}

func FuzzParseForwardSpec(f *testing.F) {
	for _, s := range []string{"8080:127.0.0.1:80", "*:1:[::1]:2", "[", "]:::", "0:a:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := parseForwardSpec(s)
		if err != nil {
			return
		}
		if _, err := parseTarget(spec.Remote); err != nil {
			t.Fatalf("%q gave remote %q that does not parse back: %v", s, spec.Remote, err)
		}
	})
}
