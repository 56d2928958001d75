package transport_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/transport"
)

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
