// Package config holds the one error type every package's Config.Validate returns for a refused
// setting. It names the Config field, never a command-line flag: cmd/gpufleet alone knows which
// flag sets which field, and adds it where it reports the error (a library's message also reaches
// Grafana and other callers that have no flags).
package config

import "fmt"

// FieldError is a Config field's value refused.
type FieldError struct {
	Field   string // the Config field, e.g. "BatchRows"
	Value   any    // the value refused
	Problem string // e.g. "must be at least 1"; may name other fields of the same Config
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s %v: %s", e.Field, e.Value, e.Problem) }
