// Package apitest proves that Tether's Go API works from outside this
// module. Its tests write a temporary module that requires
// github.com/tetherhq/tether (replaced by this checkout) and build two
// programs in it with the go command:
//
//   - testdata/ours: a test of the native API (mock, edge policy, tcp, udp)
//     that imports no internal package;
//   - testdata/qbee: a program written against go.qbee.io/transport, the
//     reference implementation, compiled with only its import line changed to
//     transport/qbeecompat.
//
// The package has no code of its own.
package apitest
