package transport_test

import (
	"io"
	"log"
	"testing"

	"go.uber.org/goleak"

	"github.com/tetherhq/tether/internal/testbroker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The shared test rig (internal/testbroker) under the short names these
// tests use.
const waitLong = testbroker.WaitLong

var (
	testCtx         = testbroker.Ctx
	testLogger      = testbroker.Logger
	pattern         = testbroker.Pattern
	patternAfterEOF = testbroker.PatternAfterEOF
	exchange        = testbroker.Exchange
)

// quietLog keeps http.Server's handshake complaints (expected in tests of
// refused certificates) out of the test output.
var quietLog = log.New(io.Discard, "", 0)
