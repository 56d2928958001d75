package wire_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/transport/wire"
)

func TestWriteMessageBytes(t *testing.T) {
	tests := []struct {
		name    string
		typ     wire.MsgType
		payload []byte
		want    []byte
	}{
		{"empty OK", wire.MsgOK, nil, []byte{0x01, 0, 0}},
		{"tcp", wire.MsgTCP, []byte("127.0.0.1:22"), append([]byte{0x10, 0, 12}, "127.0.0.1:22"...)},
		{"error", wire.MsgError, []byte("no"), []byte{0x02, 0, 2, 'n', 'o'}},
		{"max payload", wire.MsgPTY, make([]byte, wire.MaxPayload), append([]byte{0x12, 0xff, 0xff}, make([]byte, wire.MaxPayload)...)},
		{"length is big endian", wire.MsgUDP, make([]byte, 258), append([]byte{0x11, 0x01, 0x02}, make([]byte, 258)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, wire.WriteMessage(&buf, tt.typ, tt.payload))
			require.Equal(t, tt.want, buf.Bytes())
			m, err := wire.ReadMessage(&buf)
			require.NoError(t, err)
			require.Equal(t, tt.typ, m.Type)
			require.Equal(t, len(tt.payload), len(m.Payload))
		})
	}
}

func TestWriteMessageTooLarge(t *testing.T) {
	var buf bytes.Buffer
	err := wire.WriteMessage(&buf, wire.MsgTCP, make([]byte, wire.MaxPayload+1))
	require.ErrorIs(t, err, wire.ErrPayloadTooLarge)
	require.Zero(t, buf.Len(), "nothing may be written")
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    wire.Message
		wantErr error
	}{
		{"empty payload", []byte{0x14, 0, 0}, wire.Message{Type: wire.MsgReload}, nil},
		{"payload", []byte{0x10, 0, 3, 'a', ':', '1'}, wire.Message{Type: wire.MsgTCP, Payload: []byte("a:1")}, nil},
		{"unknown type still parses", []byte{0x7f, 0, 1, 'x'}, wire.Message{Type: 0x7f, Payload: []byte("x")}, nil},
		{"nothing", nil, wire.Message{}, io.EOF},
		{"header cut short", []byte{0x10, 0}, wire.Message{}, wire.ErrTruncated},
		{"payload cut short", []byte{0x10, 0, 5, 'a'}, wire.Message{}, wire.ErrTruncated},
		{"oversized length, no payload", []byte{0x10, 0xff, 0xff}, wire.Message{}, wire.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := wire.ReadMessage(bytes.NewReader(tt.in))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, m)
		})
	}
}

// TestReadMessageSplitWrites: existing peers write the header and the
// payload separately; a reader must reassemble byte by byte.
func TestReadMessageSplitWrites(t *testing.T) {
	in := append([]byte{0x10, 0, 12}, "10.0.0.1:443"...)
	m, err := wire.ReadMessage(iotest.OneByteReader(bytes.NewReader(in)))
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:443", string(m.Payload))
}

// TestReadMessageBoundedAllocation: a length field never makes the reader
// allocate more than the length allows, and reading stops at the message.
func TestReadMessageBoundedAllocation(t *testing.T) {
	in := append([]byte{0x01, 0, 2, 'o', 'k'}, "rest of the stream"...)
	r := bytes.NewReader(in)
	m, err := wire.ReadMessage(r)
	require.NoError(t, err)
	require.Equal(t, 2, cap(m.Payload))
	rest, _ := io.ReadAll(r)
	require.Equal(t, "rest of the stream", string(rest))
}

func TestExpectOK(t *testing.T) {
	tests := []struct {
		name      string
		in        []byte
		want      []byte
		wantErr   error
		wantRemot string
	}{
		{"ok", []byte{0x01, 0, 0}, nil, nil, ""},
		{"ok with session id", []byte{0x01, 0, 2, 's', '1'}, []byte("s1"), nil, ""},
		{"error", append([]byte{0x02, 0, 10}, "not allowed"[:10]...), nil, nil, "not allowe"},
		{"closed without answer", nil, nil, wire.ErrNoAnswer, ""},
		{"neither ok nor error", []byte{0x10, 0, 0}, nil, wire.ErrUnexpectedMessage, ""},
		{"truncated", []byte{0x01, 0, 9, 'x'}, nil, wire.ErrTruncated, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.ExpectOK(bytes.NewReader(tt.in))
			switch {
			case tt.wantRemot != "":
				var re *wire.RemoteError
				require.ErrorAs(t, err, &re)
				require.Equal(t, tt.wantRemot, re.Reason)
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
			default:
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
			}
		})
	}
}

func TestWriteErrorCutsLongReasonsAtRuneBoundary(t *testing.T) {
	reason := strings.Repeat("a", wire.MaxErrorReason-1) + "é and more"
	var buf bytes.Buffer
	require.NoError(t, wire.WriteError(&buf, reason))
	_, err := wire.ExpectOK(&buf)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.LessOrEqual(t, len(re.Reason), wire.MaxErrorReason)
	require.Equal(t, strings.Repeat("a", wire.MaxErrorReason-1), re.Reason, "the 2-byte rune must not be split")
}

func TestMsgTypeString(t *testing.T) {
	tests := []struct {
		t     wire.MsgType
		want  string
		known bool
	}{
		{wire.MsgOK, "OK", true},
		{wire.MsgGoAway, "GoAway", true},
		{wire.MsgTCP, "TCP", true},
		{wire.MsgFileTransfer, "FileTransfer", true},
		{0x7f, "MsgType(0x7f)", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.t.String())
		require.Equal(t, tt.known, tt.t.Known())
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0x01, 0, 0})
	f.Add(append([]byte{0x10, 0, 12}, "127.0.0.1:22"...))
	f.Add([]byte{0x02, 0xff, 0xff, 'x'})
	f.Add([]byte{0x12, 0})
	f.Add([]byte{})
	f.Add(append([]byte{0x12, 0, 5}, `{"a":1}`...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		m, err := wire.ReadMessage(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrTruncated) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		consumed := len(in) - r.Len()
		if consumed != wire.HeaderSize+len(m.Payload) {
			t.Fatalf("consumed %d bytes for a %d-byte payload", consumed, len(m.Payload))
		}
		var out bytes.Buffer
		if err := wire.WriteMessage(&out, m.Type, m.Payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), in[:consumed]) {
			t.Fatalf("re-encoding gives %x; want %x", out.Bytes(), in[:consumed])
		}
	})
}

func FuzzDecodePeerOpen(f *testing.F) {
	f.Add([]byte(`{"device":"gw-17","client":"ops","remote":"192.0.2.7:5","via":"edge-1","hops":1}`))
	f.Add([]byte(`{"device":"","client":"ops","via":"e","hops":1}`))
	f.Add([]byte(`{"device":"d","client":"c","via":"e","hops":2}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := wire.DecodePeerOpen(b)
		if err != nil {
			return
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatalf("a decoded payload does not encode: %v", err)
		}
		back, err := wire.DecodePeerOpen(enc)
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip: %+v -> %+v, %v", p, back, err)
		}
	})
}

func TestPeerOpen(t *testing.T) {
	good := wire.PeerOpen{Device: "gw-17", Client: "ops", Via: "edge-1", Hops: 1}
	b, err := good.Encode()
	require.NoError(t, err)
	got, err := wire.DecodePeerOpen(b)
	require.NoError(t, err)
	require.Equal(t, good, got)
	for _, bad := range []wire.PeerOpen{
		{Client: "ops", Via: "e", Hops: 1},
		{Device: "d", Via: "e", Hops: 1},
		{Device: "d", Client: "c", Hops: 1},
		{Device: "d", Client: "c", Via: "e", Hops: 2},
		{Device: "d", Client: "c", Via: "e", Hops: 0},
	} {
		_, err := bad.Encode()
		require.ErrorIs(t, err, wire.ErrInvalidPeerOpen, "%+v", bad)
	}
}
