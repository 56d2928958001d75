package transport_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
)

func TestWriteMessageBytes(t *testing.T) {
	tests := []struct {
		name    string
		typ     transport.MsgType
		payload []byte
		want    []byte
	}{
		{"empty OK", transport.MsgOK, nil, []byte{0x01, 0, 0}},
		{"tcp", transport.MsgTCP, []byte("127.0.0.1:22"), append([]byte{0x10, 0, 12}, "127.0.0.1:22"...)},
		{"error", transport.MsgError, []byte("no"), []byte{0x02, 0, 2, 'n', 'o'}},
		{"max payload", transport.MsgPTY, make([]byte, transport.MaxPayload), append([]byte{0x12, 0xff, 0xff}, make([]byte, transport.MaxPayload)...)},
		{"length is big endian", transport.MsgUDP, make([]byte, 258), append([]byte{0x11, 0x01, 0x02}, make([]byte, 258)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, transport.WriteMessage(&buf, tt.typ, tt.payload))
			require.Equal(t, tt.want, buf.Bytes())
			m, err := transport.ReadMessage(&buf)
			require.NoError(t, err)
			require.Equal(t, tt.typ, m.Type)
			require.Equal(t, len(tt.payload), len(m.Payload))
		})
	}
}

func TestWriteMessageTooLarge(t *testing.T) {
	var buf bytes.Buffer
	err := transport.WriteMessage(&buf, transport.MsgTCP, make([]byte, transport.MaxPayload+1))
	require.ErrorIs(t, err, transport.ErrPayloadTooLarge)
	require.Zero(t, buf.Len(), "nothing may be written")
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    transport.Message
		wantErr error
	}{
		{"empty payload", []byte{0x14, 0, 0}, transport.Message{Type: transport.MsgReload}, nil},
		{"payload", []byte{0x10, 0, 3, 'a', ':', '1'}, transport.Message{Type: transport.MsgTCP, Payload: []byte("a:1")}, nil},
		{"unknown type still parses", []byte{0x7f, 0, 1, 'x'}, transport.Message{Type: 0x7f, Payload: []byte("x")}, nil},
		{"nothing", nil, transport.Message{}, io.EOF},
		{"header cut short", []byte{0x10, 0}, transport.Message{}, transport.ErrTruncated},
		{"payload cut short", []byte{0x10, 0, 5, 'a'}, transport.Message{}, transport.ErrTruncated},
		{"oversized length, no payload", []byte{0x10, 0xff, 0xff}, transport.Message{}, transport.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := transport.ReadMessage(bytes.NewReader(tt.in))
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
	m, err := transport.ReadMessage(iotest.OneByteReader(bytes.NewReader(in)))
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:443", string(m.Payload))
}

// TestReadMessageBoundedAllocation: a length field never makes the reader
// allocate more than the length allows, and reading stops at the message.
func TestReadMessageBoundedAllocation(t *testing.T) {
	in := append([]byte{0x01, 0, 2, 'o', 'k'}, "rest of the stream"...)
	r := bytes.NewReader(in)
	m, err := transport.ReadMessage(r)
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
		{"closed without answer", nil, nil, transport.ErrNoAnswer, ""},
		{"neither ok nor error", []byte{0x10, 0, 0}, nil, transport.ErrUnexpectedMessage, ""},
		{"truncated", []byte{0x01, 0, 9, 'x'}, nil, transport.ErrTruncated, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := transport.ExpectOK(bytes.NewReader(tt.in))
			switch {
			case tt.wantRemot != "":
				var re *transport.RemoteError
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
	reason := strings.Repeat("a", transport.MaxErrorReason-1) + "é and more"
	var buf bytes.Buffer
	require.NoError(t, transport.WriteError(&buf, reason))
	_, err := transport.ExpectOK(&buf)
	var re *transport.RemoteError
	require.ErrorAs(t, err, &re)
	require.LessOrEqual(t, len(re.Reason), transport.MaxErrorReason)
	require.Equal(t, strings.Repeat("a", transport.MaxErrorReason-1), re.Reason, "the 2-byte rune must not be split")
}

func TestMsgTypeString(t *testing.T) {
	tests := []struct {
		t     transport.MsgType
		want  string
		known bool
	}{
		{transport.MsgOK, "OK", true},
		{transport.MsgGoAway, "GoAway", true},
		{transport.MsgTCP, "TCP", true},
		{transport.MsgFileTransfer, "FileTransfer", true},
		{0x7f, "MsgType(0x7f)", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.t.String())
		require.Equal(t, tt.known, tt.t.Known())
	}
}

func TestVerifyConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  *transport.Config
		ok   bool
	}{
		{"nil means defaults", nil, true},
		{"defaults", transport.DefaultConfig(), true},
		{"reference settings", &transport.Config{KeepAliveInterval: 45 * time.Second, KeepAliveTimeout: 120 * time.Second,
			MaxFrameSize: 32768, MaxStreamBuffer: 128 << 10, MaxReceiveBuffer: 4 << 20}, true},
		{"frame too large", &transport.Config{MaxFrameSize: 70000}, false},
		{"frame too small", &transport.Config{MaxFrameSize: 100}, false},
		{"timeout below interval", &transport.Config{KeepAliveInterval: time.Minute, KeepAliveTimeout: time.Second}, false},
		{"stream buffer below a frame", &transport.Config{MaxStreamBuffer: 2048}, false},
		{"receive buffer below stream buffer", &transport.Config{MaxReceiveBuffer: 1024, MaxStreamBuffer: 1 << 20}, false},
		{"negative timeout", &transport.Config{OpenTimeout: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := transport.VerifyConfig(tt.cfg)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, transport.ErrInvalidConfig)
			}
		})
	}
}

// FuzzReadMessage: ReadMessage never panics, never returns a payload
// longer than the length field, and a message it accepts encodes back to
// the bytes it consumed.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0x01, 0, 0})
	f.Add(append([]byte{0x10, 0, 12}, "127.0.0.1:22"...))
	f.Add([]byte{0x02, 0xff, 0xff, 'x'})
	f.Add([]byte{0x12, 0})
	f.Add([]byte{})
	f.Add(append([]byte{0x12, 0, 5}, `{"a":1}`...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		m, err := transport.ReadMessage(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, transport.ErrTruncated) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		consumed := len(in) - r.Len()
		if consumed != transport.HeaderSize+len(m.Payload) {
			t.Fatalf("consumed %d bytes for a %d-byte payload", consumed, len(m.Payload))
		}
		var out bytes.Buffer
		if err := transport.WriteMessage(&out, m.Type, m.Payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), in[:consumed]) {
			t.Fatalf("re-encoding gives %x; want %x", out.Bytes(), in[:consumed])
		}
	})
}
