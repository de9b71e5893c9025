package main

// The packages validate their own Config and name the field at fault (*config.FieldError); only
// here is a field given the name of the flag that sets it.

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/gpufleet/gpufleet/internal/config"
)

// fieldFlags maps a package's Config field to the flag that sets it.
type fieldFlags map[string]string

// agentFields are agent.Config's flags (agent, simulate, demo).
var agentFields = fieldFlags{
	"Interval":  "interval",
	"SendEvery": "send-every",
	"Speed":     "speed",
}

// ingestFields are ingest.Config's flags. Two are in MiB where the field is in bytes: the flag's
// value is shown as given, the field's limit in its own unit.
var ingestFields = fieldFlags{
	"BatchRows":          "batch-rows",
	"BatchBytes":         "batch-mib",
	"BatchAge":           "batch-age",
	"EventBatchAge":      "event-batch-age",
	"FoldAge":            "fold-age",
	"FoldRows":           "fold-rows",
	"SessionTimeout":     "session-timeout",
	"DLQMaxBytes":        "dlq-max-mib",
	"MaxClockAhead":      "max-clock-ahead",
	"ClockSkewTolerance": "clock-skew-tolerance",
	"SkewLogInterval":    "skew-log-interval",
	"AgentStateMax":      "agent-state-max",
	"AgentStateIdle":     "agent-state-idle",
}

var fieldName = regexp.MustCompile(`\b[A-Z][A-Za-z]+\b`)

// explain turns a *config.FieldError on a field a flag sets into a usage error naming the flag as
// given, then the field, and the flags of other fields the problem names:
//
//	--clock-skew-tolerance 2h0m0s (ClockSkewTolerance): must not exceed --max-clock-ahead 1h0m0s
//
// Any other error (a field no flag sets) is returned as it is.
func (m fieldFlags) explain(f *flags, err error) error {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	name, ok := m[fe.Field]
	fl := f.Lookup(name)
	if !ok || fl == nil {
		return err
	}
	problem := fieldName.ReplaceAllStringFunc(fe.Problem, func(w string) string {
		if other, ok := m[w]; ok && f.Lookup(other) != nil {
			return "--" + other
		}
		return w
	})
	return usageError{fmt.Errorf("--%s %s (%s): %s", name, fl.Value, fe.Field, problem)}
}
