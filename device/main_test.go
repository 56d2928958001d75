package device_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tetherhq/tether/internal/testbroker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLong bounds every wait in these tests. It only guards against hangs;
// no test asserts on elapsed time.
const waitLong = testbroker.WaitLong

var testCtx = testbroker.Ctx
