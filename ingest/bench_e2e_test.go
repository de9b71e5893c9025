package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// cpuSeconds is the CPU time this process has used, user and system; chDB runs in-process, so it
// includes the engine's insert work.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkEndToEnd measures ingest from a real local Kafka broker into chDB, and in the same run
// chDB's own INSERT rate for the same rows from prepared Native-format files cut into the same
// blocks: the engine's limit on this machine. It reports both rates, our fraction of the limit,
// and the process CPU time per million samples of each; and the same files inserted into a
// database without the rollup views (raw_insert_samples/s), with the engine's CPU with the views
// over its CPU without them (insert_cost_vs_raw; BenchmarkRollupCost breaks it down by view).
// The data is produced before the clock starts. Run (one pass is the measurement):
//
//	go test -run '^$' -bench EndToEnd -benchtime 1x ./ingest/
func BenchmarkEndToEnd(b *testing.B) {
	const (
		// 2,048,000 samples in 256,000 messages of one node's instant: a backlog long enough that
		// batches are cut on rows, as in a catch-up after an outage, not on age at its end.
		nodes, gpus, instants = 64, 8, 4000
		partitions            = 4
	)
	brokers := testenv.Kafka(b)
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	topic := st.Database() + ".samples"
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: partitions},
		{Name: st.Database() + ".events", Partitions: 1}, {Name: st.Database() + ".dlq", Partitions: 1}}); err != nil {
		b.Fatal(err)
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll,
		BatchSize: 1000, BatchBytes: 16 << 20, BatchTimeout: 10 * time.Millisecond, Compression: kafkago.Zstd}
	start := time.Now().Add(-time.Duration(instants) * time.Second)
	var msgs []kafkago.Message
	var want uint64
	sims := make([]*sim.Node, nodes)
	for n := range sims {
		sims[n] = sim.NewNode(11, "bench", n, gpus)
	}
	for i := range instants {
		for n, node := range sims {
			batch := &wirepb.SampleBatch{AgentId: node.Name, Seq: uint64(i + 1), Cluster: "bench", Node: node.Name}
			node.Sample(start.Add(time.Duration(i)*time.Second), batch, nil)
			data, err := wire.EncodeSamples(batch)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, kafkago.Message{Key: []byte(sims[n].Name), Value: data})
			want += uint64(len(batch.TimeUnixMs))
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		b.Fatal(err)
	}
	w.Close()

	// The limit: the same rows, decoded into the same columns, cut into blocks of the size ingest
	// flushes (BatchRows), written as Native files before the clock starts.
	// GPUFLEET_BENCH_LIMIT_BLOCK_ROWS cuts them otherwise, to see what block size costs chDB.
	blockRows := 100_000
	if n, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_LIMIT_BLOCK_ROWS")); err == nil && n > 0 {
		blockRows = n
	}
	files, names := nativeFiles(b, blockRows, func(yield func([]byte) bool) {
		for _, m := range msgs {
			if !yield(m.Value) {
				return
			}
		}
	})
	msgs = nil
	// The limit inserts into an identically migrated database, so its gpu_samples feeds the same
	// rollup views ours does.
	lim := migratedWith(b, st.Database()+"_limit", sampleViews())
	// And a third without the materialized views: the raw insert, to which the views' cost is a
	// ratio (insert_cost_vs_raw).
	bare := migratedWith(b, st.Database()+"_raw", nil)
	insertFiles := func(s store.Store) (rate, cpu float64) {
		cpu, wall := insertNative(b, s, files, names)
		return float64(want) / wall, cpu
	}

	b.ResetTimer()
	var ours, limit, raw, oursCPU, limitCPU, rawCPU float64
	for range b.N {
		in, err := New(Config{Brokers: brokers, Store: st, GroupID: fmt.Sprintf("%s.bench.%d", st.Database(), time.Now().UnixNano()),
			SamplesTopic: topic, EventsTopic: st.Database() + ".events", DLQTopic: st.Database() + ".dlq",
			BatchAge: 200 * time.Millisecond, // only the end of the backlog waits for the age
			Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- in.Run(runCtx) }()
		// The clock starts at the first fetched message: joining the group is a one-off second.
		for in.Stats().Fetched == 0 {
			time.Sleep(time.Millisecond)
		}
		cpu0, t0 := cpuSeconds(), time.Now()
		var fetchedAt time.Duration
		for in.Stats().Samples < want {
			if fetchedAt == 0 && in.Stats().Fetched >= nodes*instants {
				fetchedAt = time.Since(t0)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.Logf("all %d messages fetched after %s; all rows committed after %s", nodes*instants, fetchedAt, time.Since(t0))
		elapsed, cpu := time.Since(t0).Seconds(), cpuSeconds()-cpu0
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		ours, oursCPU = float64(want)/elapsed, cpu

		// Our parts' merges would otherwise run on the limit's time.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if r, err := st.Query(ctx, "SELECT count() FROM system.merges"); err != nil || r.Rows[0][0].(uint64) == 0 {
				break
			}
		}
		limit, limitCPU = insertFiles(lim)
		raw, rawCPU = insertFiles(bare)
	}
	b.StopTimer()
	r, err := st.Query(ctx, "SELECT count() FROM "+store.Table(st.Database(), "gpu_samples"))
	if err != nil {
		b.Fatal(err)
	}
	if got := r.Rows[0][0].(uint64); got != want {
		b.Fatalf("gpu_samples holds %d rows after the run, want %d", got, want)
	}
	b.ReportMetric(ours, "samples/s")
	b.ReportMetric(limit, "chdb_native_samples/s")
	b.ReportMetric(ours/limit, "fraction_of_chdb")
	b.ReportMetric(oursCPU/float64(want)*1e6, "cpu_s/Msample")
	b.ReportMetric(limitCPU/float64(want)*1e6, "chdb_cpu_s/Msample")
	b.ReportMetric(raw, "raw_insert_samples/s")
	b.ReportMetric(limitCPU/rawCPU, "insert_cost_vs_raw")
	b.ReportMetric(0, "ns/op")
}
