// Package target parses and canonicalizes the "host:port" targets that
// clients ask a device to reach, and the host:port globs that policies and
// allow lists use to admit them.
//
// Every target is reduced to one canonical spelling before it is checked or
// sent anywhere, so that a policy written as "127.0.0.1:*" also covers
// "127.1:22", "0x7f.0.0.1:22", "2130706433:22" and "[::ffff:127.0.0.1]:22",
// and a pattern such as "10.0.0.*:*" cannot be matched by a DNS name that
// merely starts with those digits.
//
// Canonical hosts are:
//   - IPv4 addresses in dotted decimal (every inet_aton spelling is accepted:
//     one to four parts, each decimal, octal with a leading 0, or hex with 0x);
//   - IPv6 addresses in RFC 5952 form, IPv4-mapped ones reduced to IPv4;
//   - DNS names in lower case without a trailing dot.
//
// Parse turns client input into a Target (or an error wrapping
// ErrInvalidTarget that says what is wrong); ParsePattern turns an allow-list
// entry into a Pattern, and Pattern.Match checks a Target against it.
// MatchGlob is the one wildcard matcher of the module, which patterns and
// the edge's device-ID globs share.
//
// The package uses the standard library only; the edge, the device's
// handlers (transport/tcp, udp) and the CLI all use it.
package target
