// Package testbroker is the test rig shared by the tests of transport,
// transport/client, transport/tcp, device and pty, so that none of them
// copies it:
//
//   - Broker: a minimal edge on 127.0.0.1 with a throw-away PKI. It
//     upgrades one device session and client sessions, and splices every
//     client stream to a new stream on the device session, opening message
//     and answer included. It can be stopped, restarted on the same
//     address, told to drop its client sessions or to send a GoAway.
//     StartDevice and DialClient connect a device.Client and a
//     client.Client to it.
//   - RawPeer and RawEdge: one end of a qbee-v1 connection driven by hand,
//     for hand-built (malformed, oversized, unknown) frames and messages.
//   - Edge: the real edge.Server with a throw-away PKI, for runnable
//     examples, which have no testing.TB to give mock.NewEdgeMock.
//   - Helpers for tests that move bytes: Exchange, Pattern,
//     PatternAfterEOF, Logger, LogRecorder, Ctx.
//
// It is imported only from _test.go files (scripts/deps-check.sh checks
// it). Everything it starts is closed and waited for in t.Cleanup (Edge:
// in Close), so the goleak check in each TestMain stays meaningful.
package testbroker
