package edge

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
)

func record(typ byte, payload []byte) []byte {
	b := []byte{typ, 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(len(payload)))
	return append(b, payload...)
}

// TestFileTapFindsTheTrailer feeds a raw body in random pieces: the tap
// finds the trailer whatever the cuts, and an Error record's reason.
func TestFileTapFindsTheTrailer(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	var body []byte
	for i := 0; i < 20; i++ {
		// Data that looks like a trailer must not fool it.
		body = append(body, record(0x00, []byte(strings.Repeat("\x01\x00\x05", 1000+i)))...)
	}
	body = append(body, record(0x01, []byte(`{"size":60000,"sha256":"`+sum+`"}`))...)
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		tap := &fileTap{}
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(7000))
			tap.feed(rest[:n])
			rest = rest[n:]
		}
		var ev Event
		tap.record(&ev)
		if ev.SHA256 != sum || ev.FileSize != 60000 {
			t.Fatalf("round %d: sha256 %q size %d; want %q 60000", round, ev.SHA256, ev.FileSize, sum)
		}
	}
	tap := &fileTap{}
	tap.feed(record(0x00, []byte("abc")))
	tap.feed(record(0x02, []byte("file shrank")))
	var ev Event
	tap.record(&ev)
	if ev.SHA256 != "" || !strings.Contains(ev.Reason, "file shrank") {
		t.Fatalf("got %+v; want no checksum and the device's reason", ev)
	}
	if newFileTap(nil, nil) != nil || newFileTap(nil, []byte(`{"v":1,"raw":false}`)) != nil || newFileTap(nil, []byte(`{"v":1,"raw":true}`)) == nil {
		t.Fatal("a tap only for raw answers")
	}
}

func FuzzFileTap(f *testing.F) {
	f.Add(append(record(0x00, []byte("abc")), record(0x01, []byte(`{"size":3,"sha256":"x"}`))...))
	f.Add(record(0x02, []byte("shrank")))
	f.Add([]byte{0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		tap := &fileTap{}
		for i := 0; i < len(b); i += 5 {
			tap.feed(b[i:min(len(b), i+5)])
		}
		if len(tap.payload) > 1<<16 {
			t.Fatalf("kept %d bytes of one record", len(tap.payload))
		}
		var ev Event
		tap.record(&ev)
	})
}
