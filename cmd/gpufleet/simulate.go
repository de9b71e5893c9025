package main

import (
	"context"
	"log/slog"
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
	f.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9402", "address for Prometheus /metrics: loopback only by default; :9402 (every interface)\n"+
		"lets Prometheus on other hosts scrape it; empty disables")
	f.DurationVar(&c.forDur, "for", 0, "stop after this long (0 runs until SIGTERM)")
	if err := f.parse(args); err != nil {
		return err
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
	cfg.Observe = s.observer(reg)
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	// Past start-up the fleet is streaming: Kafka answered, or batches wait in the spool for it.
	markReady()
	runCtx, cancel := withDeadline(ctx, forDur)
	defer cancel()
	log.Info("streaming", slog.Int("nodes", len(srcs)), slog.Int("gpus", s.gpus), slog.Duration("interval", s.interval))
	err = a.Run(runCtx)
	st := a.Stats()
	log.Info("stopped", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches), slog.Uint64("events", st.Events))
	return k.explain(err)
}
