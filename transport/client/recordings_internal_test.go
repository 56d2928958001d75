package client

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLimitedBody(t *testing.T) {
	for _, tt := range []struct {
		body    string
		left    int64
		wantErr error
	}{
		{"12345", 5, nil},
		{"12345", 6, nil},
		{"123456", 5, ErrRecordingTooLarge},
	} {
		b, err := io.ReadAll(&limitedBody{rc: io.NopCloser(strings.NewReader(tt.body)), left: tt.left})
		require.ErrorIs(t, err, tt.wantErr, tt.body)
		if tt.wantErr == nil {
			require.Equal(t, tt.body, string(b))
		}
	}
}
