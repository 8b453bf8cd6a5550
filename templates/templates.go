// Package templates holds mailconf's HTML pages (html/template files),
// embedded into the binary.
package templates

import "embed"

// FS holds every page template and its static assets.
//
//go:embed *.html
var FS embed.FS
