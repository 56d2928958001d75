// Package files is the file transfer stream (0x20), both halves: Download
// and Upload on clients, Server on devices.
//
// The compatibility floor is qbee-v1's: a JSON request naming a direction
// and an absolute path, then a gzip-compressed tar archive in one
// direction, and for uploads a final OK or Error. Our extension (the
// "tether" object of the request, ignored by qbee-v1 devices) moves a
// single file in raw mode: its bytes framed in the message format, closed
// by a trailer that carries the whole file's SHA-256, with resume from an
// offset in both directions. Uploads are written to a temporary file in the
// target's directory, checked, synced and renamed, so that a reader never
// sees a half-written target. docs/protocol.md documents every byte.
//
// Every path on a device is opened beneath an allowed root with os.Root,
// so that neither a name in an archive nor a symbolic link on disk leads
// outside it.
package files
