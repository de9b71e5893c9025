package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
)

// nvmlProbeCmd is `gpufleet nvml-probe`: the agent's NVML reads, timed and reported, nothing sent.
type nvmlProbeCmd struct {
	interval, forDur time.Duration
	asJSON           bool
}

func runNVMLProbe(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "nvml-probe", "Reads this node's GPUs through NVML every --interval for --for, exactly as the agent does,\n"+
		"and reports each GPU's identity (MIG instances included), the metrics each answered, the\n"+
		"latency of every NVML call (p50/p99/max) and of a whole tick. Nothing is sent anywhere:\n"+
		"run it on a new GPU model or driver before rolling the agent out.")
	var c nvmlProbeCmd
	f.DurationVar(&c.interval, "interval", time.Second, "sampling interval")
	f.DurationVar(&c.forDur, "for", time.Minute, "how long to sample")
	f.BoolVar(&c.asJSON, "json", false, "print the report as JSON")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	return c.run(ctx, e, log)
}

func (c *nvmlProbeCmd) validate() error {
	// The agent's own floor (agent.Config.Interval): the probe times the reads the agent would make.
	if c.interval < 10*time.Millisecond {
		return usageError{fmt.Errorf("--interval %s: must be at least 10ms", c.interval)}
	}
	if c.forDur <= 0 {
		return usageError{fmt.Errorf("--for %s: must be positive", c.forDur)}
	}
	return nil
}

func (c *nvmlProbeCmd) run(ctx context.Context, e *env, log *slog.Logger) error {
	lib, closeNVML, err := agentnvml.Open()
	switch {
	case errors.Is(err, agentnvml.ErrLibraryNotFound):
		return fmt.Errorf("NVML (libnvidia-ml.so.1) was not found: install the NVIDIA driver on this host")
	case err != nil:
		return fmt.Errorf("initialise NVML: %w", err)
	}
	defer func() {
		if err := closeNVML(); err != nil {
			log.Warn("NVML shutdown", slog.Any("err", err))
		}
	}()
	log.Info("probing", slog.Duration("for", c.forDur), slog.Duration("interval", c.interval))
	rep, err := agentnvml.Probe(ctx, lib, c.interval, c.forDur, log)
	if err != nil {
		return err
	}
	if c.asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(e.stdout)
}
