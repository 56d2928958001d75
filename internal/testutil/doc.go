// Package testutil holds the helpers that several packages' tests share:
// TCP and UDP servers on loopback with the usual handlers, a harness for
// built binaries run as child processes, building those binaries in
// TestMain, and small helpers for talking to a running tether-edge (client
// tokens, the health check, its JSON API).
//
// It is imported only from _test.go files. It depends on the standard
// library and testify, never on the packages under test, so any of them
// may use it.
//
// Every helper that starts a goroutine or a process ends it and waits for
// it in t.Cleanup, so the goleak check in each TestMain stays meaningful.
package testutil
