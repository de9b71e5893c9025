package ingest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// BenchmarkFoldEndToEnd runs ingest from a real broker into chDB twice over the same messages, in
// one run: with gpu_1m and gpu_1h made by their views (as without Config.Fold) and folded by ingest
// (Fold). The
// messages are a fleet at 1 Hz for three minutes, produced before the clock starts and read as a
// backlog in 100,000-row batches: five readings of each GPU per batch, as a live fleet's batches
// cut at the default 5 s hold (docs/rollups.md). A backlog is read faster than real time, so the
// folds are bounded by FoldRows (the fleet's GPU count by default, GPUFLEET_BENCH_FOLD_ROWS) rather
// than FoldAge: each fold then holds about a minute of its partition, as FoldAge does live.
// chDB runs in the process, so the CPU per sample is ingest's and the engine's together. It
// reports both runs' samples/s and CPU per million samples, their ratios, and the rows the folds
// inserted (gpu_1m's and gpu_1h's together) per GPU-minute (and job); both runs' rollups are
// checked to count every sample once. A third run over the same messages into a database without
// any rollup view is the pipeline's raw cost: views_cost_vs_raw and fold_cost_vs_raw are each
// run's CPU per sample over it (the insert_cost_vs_raw, ingest's CPU included), and the
// engine's CPU alone (its own counters, system.events) likewise.
//
//	go test -run '^$' -bench FoldEndToEnd -benchtime 1x ./ingest/
//
// GPUFLEET_BENCH_FEED_GPUS sets the fleet (default 20,000).
func BenchmarkFoldEndToEnd(b *testing.B) {
	gpus := feedBenchGPUs()
	const minutes, partitions, perNode = 3, 4, 8
	foldRows := gpus
	if n, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_FOLD_ROWS")); err == nil && n > 0 {
		foldRows = n
	}
	brokers := testenv.Kafka(b)
	ctx := context.Background()
	views := testenv.CHDB(b)
	folded := migratedWith(b, views.Database()+"_folded", sampleViews())
	raw := migratedWith(b, views.Database()+"_raw", nil)
	// The engine's CPU, from its own counters (every thread it runs, merges included); the rest of
	// the process's is ingest's.
	engineCPU := func() float64 {
		r, err := views.Query(ctx, "SELECT toFloat64(sum(value)) FROM system.events WHERE event IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds')")
		if err != nil {
			b.Fatal(err)
		}
		return r.Rows[0][0].(float64) / 1e6
	}
	if _, err := migrate.Apply(ctx, views, nil); err != nil {
		b.Fatal(err)
	}
	prefix := views.Database()
	topic := prefix + ".samples"
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: partitions},
		{Name: prefix + ".events", Partitions: 1}, {Name: prefix + ".dlq", Partitions: 1}}); err != nil {
		b.Fatal(err)
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll,
		BatchSize: 1000, BatchBytes: 16 << 20, BatchTimeout: 10 * time.Millisecond, Compression: kafkago.Zstd}
	nodes := make([]*sim.Node, (gpus+perNode-1)/perNode)
	for n := range nodes {
		nodes[n] = sim.NewNode(11, "bench", n, perNode)
	}
	start := time.Now().Add(-time.Duration(minutes+1) * time.Minute).Truncate(time.Minute)
	var want uint64
	var msgs []kafkago.Message
	for i := range minutes * 60 {
		for _, node := range nodes {
			batch := &wirepb.SampleBatch{AgentId: node.Name, Seq: uint64(i + 1), Cluster: "bench", Node: node.Name}
			node.Sample(start.Add(time.Duration(i)*time.Second), batch, nil)
			data, err := wire.EncodeSamples(batch)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, kafkago.Message{Key: []byte(node.Name), Value: data})
			want += uint64(len(batch.TimeUnixMs))
		}
		if len(msgs) >= 20_000 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		b.Fatal(err)
	}
	w.Close()
	total := int64(len(nodes) * minutes * 60)

	var foldRowsInserted uint64
	run := func(st store.Store, fold bool) (rate, cpu, engine float64) {
		in, err := New(Config{Brokers: brokers, Store: st, GroupID: fmt.Sprintf("%s.fold.%v.%d", prefix, fold, time.Now().UnixNano()),
			SamplesTopic: topic, EventsTopic: prefix + ".events", DLQTopic: prefix + ".dlq",
			BatchAge: 200 * time.Millisecond, Fold: fold, FoldAge: 10 * time.Minute, FoldRows: foldRows})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- in.Run(runCtx) }()
		for in.Stats().Fetched == 0 {
			time.Sleep(time.Millisecond)
		}
		cpu0, eng0, t0 := cpuSeconds(), engineCPU(), time.Now()
		// Inserted, not committed: a fold's messages are committed with it, the last ones at the stop.
		for in.Stats().Samples < want {
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		elapsed, c := time.Since(t0).Seconds(), cpuSeconds()-cpu0
		if fold {
			foldRowsInserted = in.Stats().FoldRows
		}
		if got := in.Stats().Messages; int64(got) != total {
			b.Fatalf("committed %d of %d messages", got, total)
		}
		// Its merges would otherwise run on the next run's time.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if r, err := st.Query(ctx, "SELECT count() FROM system.merges"); err != nil || r.Rows[0][0].(uint64) == 0 {
				break
			}
		}
		return float64(want) / elapsed, c, engineCPU() - eng0
	}

	b.ResetTimer()
	var viewRate, viewCPU, viewEng, foldRate, foldCPU, foldEng, rawRate, rawCPU, rawEng float64
	for range b.N {
		viewRate, viewCPU, viewEng = run(views, false)
		foldRate, foldCPU, foldEng = run(folded, true)
		rawRate, rawCPU, rawEng = run(raw, false)
	}
	b.StopTimer()
	for _, st := range []store.Store{views, folded} {
		q := "SELECT (SELECT count() FROM " + store.Table(st.Database(), schema.GPUSamples) + ")"
		for _, t := range schema.SampleViews() {
			q += ", (SELECT sum(samples) FROM " + store.Table(st.Database(), t) + ")"
		}
		r, err := st.Query(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		for i, v := range r.Rows[0] {
			if t := "gpu_samples"; i > 0 {
				t = schema.SampleViews()[i-1]
				if t == schema.Jobs {
					continue // only rows with a job
				}
			}
			if v.(uint64) != want {
				b.Fatalf("%s: column %d of %v counts %d samples, want %d", st.Database(), i, q, v, want)
			}
		}
	}
	r, err := folded.Query(ctx, "SELECT uniqExact(t, uuid, job_id) FROM "+store.Table(folded.Database(), schema.GPU1m))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(viewRate, "views_samples/s")
	b.ReportMetric(foldRate, "fold_samples/s")
	b.ReportMetric(foldRate/viewRate, "fold_rate_ratio")
	b.ReportMetric(viewCPU/float64(want)*1e6, "views_cpu_s/Msample")
	b.ReportMetric(foldCPU/float64(want)*1e6, "fold_cpu_s/Msample")
	b.ReportMetric(viewCPU/foldCPU, "cpu_views_over_fold")
	b.ReportMetric(rawRate, "raw_samples/s")
	b.ReportMetric(rawCPU/float64(want)*1e6, "raw_cpu_s/Msample")
	b.ReportMetric(viewCPU/rawCPU, "views_cost_vs_raw")
	b.ReportMetric(foldCPU/rawCPU, "fold_cost_vs_raw")
	per := func(s float64) float64 { return s / float64(want) * 1e6 }
	b.ReportMetric(per(viewEng), "views_engine_cpu_s/Msample")
	b.ReportMetric(per(foldEng), "fold_engine_cpu_s/Msample")
	b.ReportMetric(per(rawEng), "raw_engine_cpu_s/Msample")
	b.ReportMetric(viewEng/rawEng, "views_engine_cost_vs_raw")
	b.ReportMetric(foldEng/rawEng, "fold_engine_cost_vs_raw")
	b.ReportMetric(float64(foldRowsInserted)/float64(r.Rows[0][0].(uint64)), "fold_rows_per_gpu_minute")
	b.ReportMetric(0, "ns/op")
}
