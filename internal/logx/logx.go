// Package logx holds the one logging default of the project: library code
// takes an injected *slog.Logger, and nil means "discard".
package logx

import "log/slog"

// discard is the logger Or returns for nil: it drops every record.
var discard = slog.New(slog.DiscardHandler)

// Or returns l, or a logger that discards everything when l is nil. Every
// type with a Logger field resolves it through Or.
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discard
	}
	return l
}
