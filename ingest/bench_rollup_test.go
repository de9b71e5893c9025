package ingest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// BenchmarkRollupCost inserts the same Native blocks into identically migrated chDB databases that
// keep different sets of materialized views — none, all, and each alone — and reports the engine's
// CPU per million samples for each and its ratio to the insert without views (insert_cost_vs_raw
// with all of them). Two shapes of block: "catchup" (a backlog: each block holds minutes of few
// GPUs, so a minute's rollup rows fold many readings) and "live" (a large fleet at 1 Hz: each block
// holds about one reading per GPU, so a rollup row folds one reading and the views write as many
// rows as the raw insert), and two shapes between them (5,000 and 20,000 GPUs: 20 and 5 readings
// per GPU per block) for the cost as a function of readings per GPU per block. Run:
//
//	go test -run '^$' -bench RollupCost -benchtime 1x ./ingest/
//
// GPUFLEET_BENCH_ROLLUP_SAMPLES sets the samples per shape (default 1,024,000).
func BenchmarkRollupCost(b *testing.B) {
	samples := 1_024_000
	if n, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_ROLLUP_SAMPLES")); err == nil && n > 0 {
		samples = n
	}
	shapes := []struct {
		name                     string
		gpus, blockRows, samples int
	}{
		{"catchup", 512, 100_000, samples},
		{"live", 100_000, 100_000, samples},
		// Between the two: blocks of 100,000 rows holding 20 and 5 readings per GPU.
		{"gpus5000", 5_000, 100_000, samples},
		{"gpus20000", 20_000, 100_000, samples},
		// A small fleet's partition batch: 304 GPUs on 8 partitions, cut every second.
		{"small", 304, 38, 38 * 200},
	}
	views := sampleViews()
	sets := []struct {
		name string
		keep []string
	}{{"raw", nil}, {"all", views}}
	for _, v := range views {
		sets = append(sets, struct {
			name string
			keep []string
		}{strings.TrimSuffix(v, "_mv"), []string{v}})
	}
	for _, shape := range shapes {
		b.Run(shape.name, func(b *testing.B) {
			files, names := rollupBenchFiles(b, shape.gpus, shape.samples, shape.blockRows)
			dbs := make([]store.Store, len(sets))
			for i, set := range sets {
				db := migratedWith(b, fmt.Sprintf("bench_rollup_%s_%d", set.name, time.Now().UnixNano()), set.keep)
				dbs[i] = db
			}
			b.ResetTimer()
			cpu := make([]float64, len(sets))
			wall := make([]float64, len(sets))
			for range b.N {
				for i, db := range dbs {
					c, w := insertNative(b, db, files, names)
					cpu[i] += c
					wall[i] += w
				}
			}
			b.StopTimer()
			total := float64(shape.samples * b.N)
			for i, set := range sets {
				b.ReportMetric(cpu[i]/total*1e6, set.name+"_cpu_s/Msample")
				if i > 0 {
					b.ReportMetric(cpu[i]/cpu[0], set.name+"_cost_vs_raw")
				}
			}
			b.ReportMetric(total/wall[0], "raw_insert_samples/s")
			b.ReportMetric(total/wall[1], "all_insert_samples/s")
			b.ReportMetric(cpu[1]/cpu[0], "insert_cost_vs_raw")
			b.ReportMetric(wall[0]/float64(len(files)*b.N)*1e3, "raw_ms/insert")
			b.ReportMetric(wall[1]/float64(len(files)*b.N)*1e3, "all_ms/insert")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// rollupBenchFiles writes samples simulated readings of gpus GPUs (8 per node, one reading each per
// second) as Native files of blockRows rows, and returns them with their column list.
func rollupBenchFiles(b *testing.B, gpus, samples, blockRows int) ([]string, string) {
	b.Helper()
	nodes := make([]*sim.Node, (gpus+7)/8)
	for n := range nodes {
		nodes[n] = sim.NewNode(11, "bench", n, 8)
	}
	instants := samples / (len(nodes) * 8)
	start := time.Now().Add(-time.Duration(instants) * time.Second).Truncate(time.Minute)
	return nativeFiles(b, blockRows, func(yield func([]byte) bool) {
		for i := range instants {
			for _, node := range nodes {
				batch := &wirepb.SampleBatch{AgentId: node.Name, Seq: uint64(i + 1), Cluster: "bench", Node: node.Name}
				node.Sample(start.Add(time.Duration(i)*time.Second), batch, nil)
				data, err := wire.EncodeSamples(batch)
				if err != nil {
					b.Fatal(err)
				}
				if !yield(data) {
					return
				}
			}
		}
	})
}

// nativeFiles decodes the sample messages values yields into ingest's columns, cuts them into
// blocks of blockRows rows as ingest flushes them, and writes each as a Native file: what the
// benchmarks insert with chDB's own INSERT … FROM INFILE. It returns the files and their column
// list.
func nativeFiles(b *testing.B, blockRows int, values func(yield func([]byte) bool)) ([]string, string) {
	b.Helper()
	dir := b.TempDir()
	var files []string
	cols := newSampleColumns()
	var dec wire.SampleDecoder
	flush := func() {
		if cols.block.Rows() == 0 {
			return
		}
		name := filepath.Join(dir, fmt.Sprintf("block-%d.native", len(files)))
		if err := os.WriteFile(name, cols.block.AppendNative(nil), 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, name)
		cols.block.Reset()
	}
	for data := range values {
		sb, err := dec.Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		cols.appendBatch(sb)
		if cols.block.Rows() >= blockRows {
			flush()
		}
	}
	flush()
	return files, strings.Join(cols.block.ColumnNames(), ", ")
}

// sampleViews are the materialized views on gpu_samples.
func sampleViews() []string {
	var views []string
	for _, t := range schema.SampleViews() {
		views = append(views, schema.View(t))
	}
	return views
}

// migratedWith opens chDB database name with every migration applied and, of the views on
// gpu_samples, only those in keep; it is dropped when the benchmark ends.
func migratedWith(b *testing.B, name string, keep []string) store.Store {
	b.Helper()
	ctx := context.Background()
	db, err := chdb.Open(testenv.DataDir(b), name, testenv.LibCHDB(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		db.Exec(ctx, "DROP DATABASE IF EXISTS "+db.Database())
		db.Close()
	})
	if _, err := migrate.Apply(ctx, db, nil); err != nil {
		b.Fatal(err)
	}
	for _, v := range sampleViews() {
		if !slices.Contains(keep, v) {
			if err := db.Exec(ctx, "DROP VIEW "+store.Table(db.Database(), v)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return db
}

// insertNative inserts the Native files into s's gpu_samples, and returns the process CPU seconds
// (chDB runs in-process: the engine's work, background merges included) and wall seconds it took.
func insertNative(b *testing.B, s store.Store, files []string, names string) (cpu, wall float64) {
	b.Helper()
	c0, t0 := cpuSeconds(), time.Now()
	for _, f := range files {
		if err := s.Exec(context.Background(), "INSERT INTO "+store.Table(s.Database(), schema.GPUSamples)+" ("+names+
			") FROM INFILE "+store.QuoteString(f)+" FORMAT Native"); err != nil {
			b.Fatal(err)
		}
	}
	return cpuSeconds() - c0, time.Since(t0).Seconds()
}
