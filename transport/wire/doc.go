// Package wire is the qbee-v1 stream protocol's messages: the message
// types, the framing of the one message that opens a stream and the one
// that answers it, the JSON payloads of PTY streams (PTY commands and our
// exit-status extension), and their sentinel errors. It uses the standard
// library only; sessions, streams and everything that moves bytes live in
// the packages above it. docs/protocol.md describes the wire in prose.
//
// A stream's opener writes one message with WriteMessage: a MsgType (such
// as MsgTCP, whose payload is "host:port"), a 2-byte big-endian length and
// the payload. The responder reads it with ReadMessage, which allocates
// nothing beyond the length it read and reassembles writes split across
// frames, and answers with WriteOK (an optional payload) or WriteError (a
// reason for a person). The opener reads the answer with ExpectOK: an Error
// answer becomes a *RemoteError with the reason, and a stream closed with
// no answer ErrNoAnswer (the device may not support the type).
// transport.Session.OpenStream does the opener's half; device.Client reads
// the opening message before it calls a handler.
//
// PTY streams carry PTYCommand as JSON (Encode, DecodePTYCommand, both
// checking every field); ExitStatus is the answer to a status command.
//
// Exec streams (MsgExec, our extension) open with a JSON ExecRequest and
// then carry exec frames both ways: a channel byte (stdin, stdout, stderr,
// stdin EOF, exit), a 4-byte big-endian length and the data.
// AppendExecFrame writes one; an ExecReader reads them, checking the
// channel and the length before it reads the data.
package wire
