//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/backend"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

// demoCmd is `gpufleet demo`: the whole pipeline in one process.
type demoCmd struct {
	s                          simFlags
	auth                       apiAuthFlags
	dataDir, libchdb, httpAddr string
	forDur                     time.Duration
}

func runDemo(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "demo", "Runs the whole pipeline in one process on embedded defaults: a simulated fleet streams to an\n"+
		"in-process Kafka-protocol broker, ingest inserts into the embedded ClickHouse engine (chDB) in\n"+
		"--data-dir, a progress line prints every second, and a fleet summary prints at the end.\n"+
		"While it runs, /metrics and the query API (/api/v1/summary, /api/v1/series?metric=gpu_util&agg=p99, ...)\n"+
		"are served on --http.")
	var c demoCmd
	c.s.register(f, 64)
	f.StringVar(&c.dataDir, "data-dir", "gpufleet-demo-data", "chDB data directory (kept between runs)")
	f.StringVar(&c.libchdb, "libchdb", "", "path of libchdb.so (default: search $GPUFLEET_LIBCHDB, next to the binary, /usr/local/lib)")
	f.StringVar(&c.httpAddr, "http", "127.0.0.1:8080", "address for /metrics, /healthz and the /api/v1/ query API (loopback only by default;\n"+
		"0.0.0.0:8080 serves other hosts); empty disables")
	c.auth.register(f)
	f.DurationVar(&c.forDur, "for", 0, "stop after this long (0 runs until Ctrl-C)")
	if err := f.parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	token, err := c.auth.resolve()
	if err != nil {
		return err
	}
	srcs, err := c.s.sources(f)
	if err != nil {
		return err
	}
	return c.run(ctx, e, log, token, srcs)
}

func (c *demoCmd) run(ctx context.Context, e *env, log *slog.Logger, token string, srcs []agent.Source) error {
	start := time.Now()
	st, err := backend.OpenCHDB(c.dataDir, "gpufleet", c.libchdb)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := migrate.Apply(ctx, st, log); err != nil {
		return err
	}
	// The API reads on a connection of its own that cannot write, as `gpufleet api` does.
	rd, err := backend.OpenCHDBReader(c.dataDir, "gpufleet", c.libchdb, store.DefaultLimits())
	if err != nil {
		return err
	}
	defer rd.Close()

	topics := []string{wire.SamplesTopic, wire.EventsTopic}
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topics...), kfake.SeedTopics(1, wire.DLQTopic))
	if err != nil {
		return fmt.Errorf("start in-process broker: %w", err)
	}
	defer broker.Close()
	brokers := broker.ListenAddrs()

	reg := newRegistry()
	page := ""
	if c.httpAddr != "" {
		bound, err := serveAPI(ctx, "--http", c.httpAddr, reg, log, httpapi.Handler(rd, time.Now), token)
		if err != nil {
			return err
		}
		page = "http://" + bound.String() + "/"
		log.Info("serving the query API", slog.String("addr", bound.String()), slog.String("page", page), slog.Bool("token", token != ""))
	}

	prod := kafka.NewProducer(brokers)
	defer prod.Close()
	acfg := c.s.agentConfig()
	acfg.Sources, acfg.Sender, acfg.Logger, acfg.Registerer = srcs, prod, log, reg
	ag, err := agent.New(acfg)
	if err != nil {
		return err
	}
	in, err := ingest.New(ingest.Config{Brokers: brokers, Store: st, BatchAge: 500 * time.Millisecond, Fold: true, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "demo: %d GPUs on %d nodes every %s; data in %s; Ctrl-C stops\n", c.s.gpus, len(srcs), c.s.interval, absPath(c.dataDir))
	if page != "" {
		fmt.Fprintf(e.stderr, "demo: fleet health page at %s\n", page)
	}
	if err := c.stream(ctx, e, log, start, ag, in); err != nil {
		return err
	}
	sum, err := query.FleetSummary(context.WithoutCancel(ctx), st, start.Add(-time.Second), time.Now().Add(time.Second), 5)
	if err != nil {
		return err
	}
	return sum.WriteText(e.stdout)
}

// stream runs the agent until --for or Ctrl-C, printing progress, then lets ingest catch up with
// every sample taken before stopping it.
func (c *demoCmd) stream(ctx context.Context, e *env, log *slog.Logger, start time.Time, ag *agent.Agent, in *ingest.Ingester) error {
	agentCtx, stopAgent := withDeadline(ctx, c.forDur)
	defer stopAgent()
	ingestCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	defer stopIngest()
	agentDone := make(chan error, 1)
	ingestDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(agentCtx) }()
	go func() { ingestDone <- in.Run(ingestCtx) }()

	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	// On a terminal the progress line rewrites itself; in a log it is one line per second.
	tty := isTerminal(e.stderr)
	line := func(final bool) {
		a, i := ag.Stats(), in.Stats()
		text := fmt.Sprintf("[%5.1fs] sampled %d  ingested %d  events %d  dead-lettered %d",
			time.Since(start).Seconds(), a.Samples, i.Samples, i.Events, i.DLQ)
		switch {
		case tty && final:
			fmt.Fprintf(e.stderr, "\r\033[K%s\n", text)
		case tty:
			fmt.Fprintf(e.stderr, "\r\033[K%s", text)
		default:
			fmt.Fprintln(e.stderr, text)
		}
	}
	var agentErr error
wait:
	for {
		select {
		case agentErr = <-agentDone: // --for elapsed or Ctrl-C: the agent delivered its last cycle
			break wait
		case <-progress.C:
			line(false)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for in.Stats().Samples < ag.Stats().Samples && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopIngest()
	ingestErr := <-ingestDone
	line(true)
	if agentErr != nil {
		return agentErr
	}
	if ingestErr != nil {
		return ingestErr
	}
	if in.Stats().Samples != ag.Stats().Samples {
		log.Warn("ingest did not catch up before stopping", slog.Uint64("sampled", ag.Stats().Samples), slog.Uint64("ingested", in.Stats().Samples))
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
