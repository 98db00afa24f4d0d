// Package rego holds toolgate's default policies. They are Rego and data
// files; this Go file only compiles a copy of them into the binary, for a
// toolgate run outside the repository.
package rego

import "embed"

// FS holds the default policy files.
//
//go:embed *.rego *.json
var FS embed.FS
