// Package web holds the files of the edge's web terminal: the page
// templates, the stylesheet and scripts of our own, and the vendored
// xterm.js and asciinema-player, the recordings' player (vendor/,
// refreshed by make vendor-web; see vendor/VENDOR.txt).
// They are embedded, so building the edge needs neither npm nor the
// network. The edge serves them (edge.WebConfig).
package web

import "embed"

// Files holds templates/*.html, static/ and vendor/.
//
//go:embed templates/*.html static vendor
var Files embed.FS
