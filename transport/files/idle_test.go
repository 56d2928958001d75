package files_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// TestDownloadIdleTimeout: a device that sends part of a raw body and then
// nothing ends the download after the idle timeout, with a reason.
func TestDownloadIdleTimeout(t *testing.T) {
	stall := func(_ context.Context, st *transport.Stream, _ []byte) error {
		ans, _ := json.Marshal(files.Answer{V: files.Version, Raw: true, Size: 1 << 20, MTimeNS: 1, Mode: 0o644})
		if err := wire.WriteOK(st, ans); err != nil {
			return err
		}
		frame := append([]byte{byte(files.FrameData), 0x10, 0x00}, make([]byte, 0x1000)...)
		if _, err := st.Write(frame); err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, st) // until the client gives up
		return nil
	}
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{wire.MsgFileTransfer: stall})
	cl := b.DialClient(t, nil)
	var got int
	res, err := files.Download(testbroker.Ctx(t), cl, "/var/log/app.log", io.Discard, &files.DownloadOptions{
		IdleTimeout: 300 * time.Millisecond, Progress: func(n int) { got += n }})
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.ErrorContains(t, err, "no data from the device for too long")
	require.Equal(t, int64(0x1000), res.Bytes, "the bytes before the stall are written")
	require.Equal(t, 0x1000, got)
}
