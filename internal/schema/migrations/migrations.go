// Package migrations embeds the ClickHouse schema as numbered SQL files, applied in order by
// `gpufleet migrate` (package migrate). Files are never edited once released: add a new one.
package migrations

import "embed"

// FS holds NNNN_name.sql files.
//
//go:embed *.sql
var FS embed.FS
