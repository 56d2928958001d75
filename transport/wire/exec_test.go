package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/transport/wire"
)

func TestExecRequest(t *testing.T) {
	b, err := wire.ExecRequest{Command: "ps | grep agent"}.Encode()
	require.NoError(t, err)
	require.Equal(t, `{"command":"ps | grep agent"}`, string(b))
	r, err := wire.DecodeExecRequest([]byte(`{"command":"","future":1}`))
	require.NoError(t, err)
	require.Equal(t, "", r.Command)

	for name, bad := range map[string]string{
		"not JSON":     `ps`,
		"wrong type":   `{"command":["ps"]}`,
		"NUL":          `{"command":"a\u0000b"}`,
		"too long":     `{"command":"` + strings.Repeat("x", wire.MaxExecCommand+1) + `"}`,
		"invalid utf8": "{\"command\":\"\xff\"}",
	} {
		_, err := wire.DecodeExecRequest([]byte(bad))
		if name == "invalid utf8" && err == nil {
			continue // encoding/json replaces invalid UTF-8, which is then valid
		}
		require.ErrorIs(t, err, wire.ErrInvalidExecRequest, name)
	}
	_, err = wire.ExecRequest{Command: "\xff"}.Encode()
	require.ErrorIs(t, err, wire.ErrInvalidExecRequest)
}

func TestExecFrames(t *testing.T) {
	var buf []byte
	var err error
	big := bytes.Repeat([]byte{0xAB}, wire.MaxExecData)
	buf, err = wire.AppendExecFrame(buf, wire.ExecStdin, []byte("hello"))
	require.NoError(t, err)
	buf, err = wire.AppendExecFrame(buf, wire.ExecStdout, big)
	require.NoError(t, err)
	buf, err = wire.AppendExecFrame(buf, wire.ExecStdinEOF, nil)
	require.NoError(t, err)
	exit, err := wire.ExecExitFrame(wire.ExitStatus{Exited: true, Code: 130, Signal: "INT"})
	require.NoError(t, err)
	buf = append(buf, exit...)
	require.Equal(t, []byte{0x00, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}, buf[:10])
	hdr := make([]byte, wire.ExecFrameHeader)
	wire.PutExecFrameHeader(hdr, wire.ExecStdin, 5)
	require.Equal(t, buf[:wire.ExecFrameHeader], hdr, "the header written in place equals the appended one")

	// Delivered one byte at a time, the frames are reassembled.
	r := wire.NewExecReader(iotestOneByte(bytes.NewReader(buf)))
	f, err := r.ReadExecFrame()
	require.NoError(t, err)
	require.Equal(t, wire.ExecStdin, f.Channel)
	require.Equal(t, "hello", string(f.Data))
	f, err = r.ReadExecFrame()
	require.NoError(t, err)
	require.Equal(t, wire.ExecStdout, f.Channel)
	require.Equal(t, big, f.Data)
	f, err = r.ReadExecFrame()
	require.NoError(t, err)
	require.Equal(t, wire.ExecStdinEOF, f.Channel)
	require.Empty(t, f.Data)
	f, err = r.ReadExecFrame()
	require.NoError(t, err)
	require.Equal(t, wire.ExecExit, f.Channel)
	st, err := wire.DecodeExecExit(f.Data)
	require.NoError(t, err)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 130, Signal: "INT"}, st)
	_, err = r.ReadExecFrame()
	require.ErrorIs(t, err, io.EOF)

	require.True(t, wire.ExecStdin.FromClient())
	require.False(t, wire.ExecStdout.FromClient())
	require.True(t, wire.ExecExit.FromDevice())
	require.False(t, wire.ExecStdinEOF.FromDevice())
	require.Equal(t, "stderr", wire.ExecStderr.String())
	require.Equal(t, "ExecChannel(0x09)", wire.ExecChannel(9).String())
	require.Equal(t, "Exec", wire.MsgExec.String())
}

func TestExecFrameErrors(t *testing.T) {
	hdr := func(c byte, n uint32) []byte {
		b := []byte{c, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], n)
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown channel", hdr(0x09, 1), wire.ErrInvalidExecFrame},
		{"oversized data", hdr(0x01, wire.MaxExecData+1), wire.ErrInvalidExecFrame},
		{"huge length", hdr(0x00, 0xFFFFFFFF), wire.ErrInvalidExecFrame},
		{"empty data", hdr(0x02, 0), wire.ErrInvalidExecFrame},
		{"eof with data", hdr(0x03, 1), wire.ErrInvalidExecFrame},
		{"oversized exit", hdr(0x04, wire.MaxExecExit+1), wire.ErrInvalidExecFrame},
		{"header cut short", []byte{0x01, 0}, wire.ErrTruncated},
		{"data cut short", append(hdr(0x01, 10), "abc"...), wire.ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.NewExecReader(bytes.NewReader(tc.in)).ReadExecFrame()
			require.ErrorIs(t, err, tc.want)
		})
	}
	_, err := wire.AppendExecFrame(nil, wire.ExecStdout, nil)
	require.ErrorIs(t, err, wire.ErrInvalidExecFrame)
	_, err = wire.AppendExecFrame(nil, wire.ExecStdout, make([]byte, wire.MaxExecData+1))
	require.ErrorIs(t, err, wire.ErrInvalidExecFrame)
	_, err = wire.ExecExitFrame(wire.ExitStatus{})
	require.ErrorIs(t, err, wire.ErrInvalidExecFrame)
	for _, bad := range []string{`{"exited":false}`, `{"exited":true,"code":300}`, `x`} {
		_, err = wire.DecodeExecExit([]byte(bad))
		require.ErrorIs(t, err, wire.ErrInvalidExecFrame, bad)
	}
}

// iotestOneByte returns a reader that yields one byte per Read.
func iotestOneByte(r io.Reader) io.Reader { return &oneByte{r} }

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func FuzzReadExecFrame(f *testing.F) {
	ok, _ := wire.AppendExecFrame(nil, wire.ExecStdout, []byte("out"))
	exit, _ := wire.ExecExitFrame(wire.ExitStatus{Exited: true, Code: 3})
	f.Add(ok)
	f.Add(exit)
	f.Add([]byte{0x03, 0, 0, 0, 0})
	f.Add([]byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0x07, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := wire.NewExecReader(bytes.NewReader(b))
		for {
			fr, err := r.ReadExecFrame()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrTruncated) {
					require.ErrorIs(t, err, wire.ErrInvalidExecFrame)
				}
				return
			}
			// Every frame read re-encodes to the same bytes.
			enc, err := wire.AppendExecFrame(nil, fr.Channel, fr.Data)
			require.NoError(t, err)
			require.LessOrEqual(t, len(enc), wire.ExecFrameHeader+wire.MaxExecData)
			if fr.Channel == wire.ExecExit {
				_, _ = wire.DecodeExecExit(fr.Data)
			}
		}
	})
}

func FuzzDecodeExecRequest(f *testing.F) {
	f.Add([]byte(`{"command":"echo a | tr a b"}`))
	f.Add([]byte(`{"command":""}`))
	f.Add([]byte(`{"command":"a\u0000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := wire.DecodeExecRequest(b)
		if err != nil {
			require.True(t, errors.Is(err, wire.ErrInvalidExecRequest) || errors.Is(err, wire.ErrPayloadTooLarge), err)
			return
		}
		enc, err := r.Encode()
		require.NoError(t, err)
		back, err := wire.DecodeExecRequest(enc)
		require.NoError(t, err)
		require.Equal(t, r, back)
	})
}
