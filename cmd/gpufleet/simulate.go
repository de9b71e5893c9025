package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/internal/kafka"
)

// simulateCmd is `gpufleet simulate`: a simulated fleet streamed to Kafka as its agents would.
type simulateCmd struct {
	k           kafkaFlags
	s           simFlags
	metricsAddr string
	forDur      time.Duration
}

func runSimulate(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "simulate", "Streams a simulated fleet (seeded, time-varying utilisation, temperature, power, clocks,\n"+
		"ECC counters, occasional XIDs and thermal throttling) to Kafka, as that many agents would.")
	var c simulateCmd
	c.k.register(f)
	c.s.register(f, 64)
	c.s.registerDCGMCompat(f)
	c.s.registerSpeed(f)
	f.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9402", "address for Prometheus /metrics: loopback only by default; :9402 (every interface)\n"+
		"lets Prometheus on other hosts scrape it; empty disables")
	f.DurationVar(&c.forDur, "for", 0, "stop after this long (0 runs until SIGTERM)")
	if err := f.parse(args); err != nil {
		return err
	}
	if c.s.speed > 1 && c.forDur <= 0 {
		return usageError{fmt.Errorf("--speed %d needs --for: the simulated clock ends about now, so it starts speed × --for before", c.s.speed)}
	}
	if c.s.speed > 1 && time.Duration(c.s.speed-1)*c.forDur > maxSimPast {
		return usageError{fmt.Errorf("--speed %d --for %s starts the simulated clock more than %s back, which ingest refuses: shorten --for", c.s.speed, c.forDur, maxSimPast)}
	}
	return streamFleet(ctx, f, &c.k, &c.s, c.metricsAddr, c.forDur)
}

// streamFleet runs an agent over simulated nodes (simulate, agent --source sim).
func streamFleet(ctx context.Context, f *flags, k *kafkaFlags, s *simFlags, metricsAddr string, forDur time.Duration) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	srcs, err := s.sources(f)
	if err != nil {
		return err
	}
	sp, brokers, err := s.spoolAndBrokers(ctx, log, k)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	reg := newRegistry()
	if err := serveHTTP(ctx, metricsAddr, reg, log, nil); err != nil {
		return err
	}
	prod := kafka.NewProducerConn(brokers, k.conn)
	defer prod.Close()
	cfg := s.agentConfig()
	cfg.Sources, cfg.Sender, cfg.Logger, cfg.Registerer, cfg.Spool = srcs, prod, log, reg, sp
	if cfg.Speed > 1 {
		cfg.Start = time.Now().Add(-time.Duration(cfg.Speed-1) * forDur)
	}
	cfg.Observe = s.observer(reg)
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	// Past start-up the fleet is streaming: Kafka answered, or batches wait in the spool for it.
	markReady()
	runCtx, cancel := withDeadline(ctx, forDur)
	defer cancel()
	log.Info("streaming", slog.Int("nodes", len(srcs)), slog.Int("gpus", s.gpus), slog.Duration("interval", s.interval),
		slog.Int("speed", cfg.Speed))
	stopProgress := progress(runCtx, log, a, cfg.Interval)
	err = a.Run(runCtx)
	stopProgress()
	st := a.Stats()
	log.Info("stopped", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches), slog.Uint64("events", st.Events))
	return k.explain(err)
}

// maxSimPast is how far back --speed may start the simulated clock: inside ingest's 30 days.
const maxSimPast = 29 * 24 * time.Hour

// progressEvery spaces simulate's progress lines.
const progressEvery = 10 * time.Second

// progress logs every progressEvery what the agent delivered since the last line: samples a
// second, and the GPUs at interval that rate stands for (the load a --speed run puts on ingest).
// The returned function stops it.
func progress(ctx context.Context, log *slog.Logger, a *agent.Agent, interval time.Duration) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		last, at := a.Stats(), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				st := a.Stats()
				rate := float64(st.Samples-last.Samples) / now.Sub(at).Seconds()
				log.Info("progress", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches),
					slog.Float64("samples_per_s", math.Round(rate)), slog.Float64("gpus_at_interval", math.Round(rate*interval.Seconds())),
					slog.Uint64("missed_ticks", st.MissedTicks))
				last, at = st, now
			}
		}
	}()
	return func() { cancel(); <-done }
}
