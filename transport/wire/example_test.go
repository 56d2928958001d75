package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/tetherhq/tether/transport/wire"
)

// ExampleWriteMessage shows the bytes of an opening message: type, length
// (2 bytes, big endian), payload.
func ExampleWriteMessage() {
	var b strings.Builder
	wire.WriteMessage(&b, wire.MsgTCP, []byte("127.0.0.1:22"))
	fmt.Printf("% x\n", b.String())
	// Output: 10 00 0c 31 32 37 2e 30 2e 30 2e 31 3a 32 32
}

// ExampleExpectOK reads the answer to an opening message: an Error answer
// becomes a *RemoteError carrying the device's reason.
func ExampleExpectOK() {
	var b bytes.Buffer
	wire.WriteError(&b, "dial tcp 127.0.0.1:22: connection refused")
	_, err := wire.ExpectOK(&b)
	var re *wire.RemoteError
	if errors.As(err, &re) {
		fmt.Println("refused:", re.Reason)
	}
	// Output: refused: dial tcp 127.0.0.1:22: connection refused
}
