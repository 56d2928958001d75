// Package pty is the PTY stream type (0x12, 0x13), both halves: shells
// and commands on a pseudo-terminal of the device, driven from the client.
//
// On the client, Open starts a session and returns a *Session, whose
// stream carries the terminal's bytes both ways; Resize, Status and
// WaitExit send PTY command streams (0x13) for it. The CLI's terminal
// helpers are in package pty/term.
//
// On the device, a Server answers PTY streams: it starts the login shell,
// or the requested command, on a new pseudo-terminal, answers OK with a
// random session ID and copies the terminal's bytes both ways. PTY command
// streams resize a session (type 0) or report how its process ended (type
// 1, our exit-status extension; see docs/protocol.md). The zero Server
// works and refuses every session until its Config enables them.
//
// Teardown: when the client's side of the stream ends (it closed the
// stream, or its write side), the session is hung up: SIGHUP to the
// session's process group, SIGKILL to every process of the session after
// a grace period, then the child is reaped and the terminal closed. When
// the process exits by itself, its remaining output is drained to the
// stream first. A client that wants to pass end-of-input and still read
// the output sends the terminal's EOF character instead of closing
// (Session.SendEOF).
//
// Exec streams (0x71, our extension) run a command without a terminal, as
// ssh runs `ssh host CMD`: Exec on the client returns an *ExecSession
// (Write and CloseWrite feed stdin, Wait copies stdout and stderr apart and
// returns the exit status); an ExecServer on the device runs `shell -c
// COMMAND` (or the login shell reading stdin) as the same run-as user with
// the same clean environment as a PTY session, over pipes, and hangs it up
// the same way when the client leaves before its end.
package pty
