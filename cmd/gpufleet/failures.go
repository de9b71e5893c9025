//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// failureFlags are the flags of the failure reports (--report health, drain, interruptions).
type failureFlags struct {
	lookback, silentAfter, within time.Duration
	limit                         int
}

// failureReports are the --report names failureFlags apply to.
var failureReports = []string{"health", "drain", "interruptions"}

func (ff *failureFlags) register(f *flags) {
	f.DurationVar(&ff.lookback, "lookback", query.DefaultLookback, "--report health and drain: the fleet is every GPU with a sample this far back; a GPU\n"+
		"silent longer leaves the drain list (a decommissioned one)")
	f.DurationVar(&ff.silentAfter, "silent-after", query.DefaultSilent, "--report health and drain: a GPU whose newest sample is older has stopped reporting;\n"+
		"--report interruptions: a job whose newest sample is older has ended")
	f.DurationVar(&ff.within, "within", query.DefaultWithin, "--report interruptions: a job is interrupted when it ended this soon after a fatal event\n"+
		"on one of its GPUs (whole seconds)")
	f.IntVar(&ff.limit, "limit", query.DefaultDrainMax, fmt.Sprintf("--report drain: list at most this many GPUs (1..%d)", query.MaxDrainRows))
}

// runFailureReport prints a failure report as JSON: the fleet now (health, drain) or the jobs that
// ended over the last since (interruptions).
func runFailureReport(ctx context.Context, e *env, st store.Store, report string, since time.Duration, ff failureFlags) error {
	now := time.Now()
	win := query.FleetWindow{At: now, Lookback: ff.lookback, Silent: ff.silentAfter}
	var v any
	var err error
	switch report {
	case "health":
		v, err = query.Health(ctx, st, win)
	case "drain":
		v, err = query.Drain(ctx, st, win, ff.limit)
	case "interruptions":
		v, err = query.Interruptions(ctx, st, query.JobWindow{From: now.Add(-since), To: now, At: now, Within: ff.within, Idle: ff.silentAfter})
	}
	if errors.Is(err, query.ErrInvalid) {
		return usageError{flagNames(err)}
	}
	if err != nil {
		return explainMissingSchema(err)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// flagNames says which flag an ErrInvalid of the failure reports is about: the query layer names
// its fields (silent, idle, since), the CLI's flags are spelt otherwise.
func flagNames(err error) error {
	flag := map[string]string{"silent": "--silent-after", "idle": "--silent-after", "lookback": "--lookback", "within": "--within",
		"limit": "--limit", "from": "--since", "since": "--since"}
	msg := err.Error()
	for field, name := range flag {
		if p := query.ErrInvalid.Error() + ": " + field + ":"; len(msg) >= len(p) && msg[:len(p)] == p {
			return fmt.Errorf("%s:%s", name, msg[len(p):])
		}
	}
	return err
}
