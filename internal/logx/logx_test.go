package logx

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
)

func TestOr(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	if got := Or(l); got != l {
		t.Errorf("Or(l) = %p; want l itself (%p)", got, l)
	}
	d := Or(nil)
	if d == nil {
		t.Fatal("Or(nil) = nil; want a logger")
	}
	if d.Enabled(context.Background(), slog.LevelError) {
		t.Error("Or(nil) is enabled at LevelError; want a logger that discards everything")
	}
	d.Error("dropped") // must not panic
}
