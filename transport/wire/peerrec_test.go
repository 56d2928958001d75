package wire_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/wire"
)

func TestPeerRecordingsValidate(t *testing.T) {
	ok := wire.PeerRecordings{Op: wire.PeerRecordingsList, Via: "e1", Client: "ops"}
	fetch := wire.PeerRecordings{Op: wire.PeerRecordingsFetch, Via: "e1", Client: "ops", ID: "edge-2-0123456789abcdef"}
	require.NoError(t, ok.Validate())
	require.NoError(t, fetch.Validate())
	for name, p := range map[string]wire.PeerRecordings{
		"no op":           {Via: "e1", Client: "ops"},
		"unknown op":      {Op: "delete", Via: "e1", Client: "ops"},
		"no via":          {Op: wire.PeerRecordingsList, Client: "ops"},
		"no client":       {Op: wire.PeerRecordingsList, Via: "e1"},
		"long device":     {Op: wire.PeerRecordingsList, Via: "e1", Client: "ops", Device: strings.Repeat("d", 257)},
		"negative since":  {Op: wire.PeerRecordingsList, Via: "e1", Client: "ops", Since: -1},
		"limit too large": {Op: wire.PeerRecordingsList, Via: "e1", Client: "ops", Limit: wire.MaxPeerRecordingsLimit + 1},
		"list with id":    {Op: wire.PeerRecordingsList, Via: "e1", Client: "ops", ID: "e1-0123456789abcdef"},
		"fetch no id":     {Op: wire.PeerRecordingsFetch, Via: "e1", Client: "ops"},
		"fetch traversal": {Op: wire.PeerRecordingsFetch, Via: "e1", Client: "ops", ID: "../../etc/passwd"},
		"fetch upper hex": {Op: wire.PeerRecordingsFetch, Via: "e1", Client: "ops", ID: "e1-0123456789ABCDEF"},
		"fetch short hex": {Op: wire.PeerRecordingsFetch, Via: "e1", Client: "ops", ID: "e1-0123456789abcde"},
		"fetch slash":     {Op: wire.PeerRecordingsFetch, Via: "e1", Client: "ops", ID: "a/b-0123456789abcdef"},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, p.Validate(), wire.ErrInvalidPeerRecordings)
			_, err := p.Encode()
			require.ErrorIs(t, err, wire.ErrInvalidPeerRecordings)
		})
	}
}

func TestValidRecordingID(t *testing.T) {
	for id, want := range map[string]bool{
		"e1-0123456789abcdef":         true,
		"edge-2-0123456789abcdef":     true,
		"edge.a:b_c-ffffffffffffffff": true,
		"-0123456789abcdef":           false,
		"e1-0123456789abcdef.cast":    false,
		"e1-0123456789abcdef\n":       false,
		"e1/0123456789abcdef":         false,
		"..-0123456789abcdeg":         false,
		"e 1-0123456789abcdef":        false,
		"":                            false,
	} {
		require.Equal(t, want, wire.ValidRecordingID(id), id)
	}
}

func FuzzDecodePeerRecordings(f *testing.F) {
	f.Add([]byte(`{"op":"list","via":"e1","client":"ops","device":"gw-17","of":"ops","since":1764662400,"limit":100}`))
	f.Add([]byte(`{"op":"fetch","via":"e1","client":"ops","id":"edge-2-0123456789abcdef"}`))
	f.Add([]byte(`{"op":"fetch","via":"e1","client":"ops","id":"../x-0123456789abcdef"}`))
	f.Add([]byte(`{"op":"list","via":"e1","client":"ops","limit":1e9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := wire.DecodePeerRecordings(b)
		if err != nil {
			return
		}
		if p.Op == wire.PeerRecordingsFetch && (!wire.ValidRecordingID(p.ID) || strings.ContainsAny(p.ID, "/\\\x00")) {
			t.Fatalf("decoded a fetch of %q", p.ID)
		}
		enc, err := p.Encode()
		require.NoError(t, err, "a decoded request re-encodes")
		again, err := wire.DecodePeerRecordings(enc)
		require.NoError(t, err)
		require.Equal(t, p, again)
	})
}
