package chserver

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	chproto "github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/store"
)

// samplesBlock is a gpu_samples block as ingest cuts it (ingest/columns.go: the labels as
// LowCardinality, one column per catalogue metric): nodes × 8 GPUs × instants rows, each node's
// rows together as its messages arrive, with one metric in five NULL on a node's GPUs (a metric
// the model does not answer).
func samplesBlock(nodes, instants int) *store.Block {
	lc := func(name string) *store.ColLowCardString { return &store.ColLowCardString{ColName: name} }
	tm := &store.ColDateTime64{ColName: "time"}
	cluster, node, rack, pool := lc("cluster"), lc("node"), lc("rack"), lc("pool")
	gpu := &store.ColUInt8{ColName: "gpu"}
	uuid, parent, model, job, driver, agent := lc("uuid"), lc("parent_uuid"), lc("model"), lc("job_id"), lc("driver_version"), lc("agent_id")
	seq := &store.ColUInt64{ColName: "seq"}
	b := &store.Block{Columns: []store.Column{tm, cluster, node, rack, pool, gpu, uuid, parent, model, job, driver, agent, seq}}
	var gauges []*store.ColNullFloat32
	var counters []*store.ColNullUInt64
	for _, m := range gpumetric.All() {
		if m.Kind.Integer() {
			c := &store.ColNullUInt64{ColName: m.Column}
			counters = append(counters, c)
			b.Columns = append(b.Columns, c)
		} else {
			c := &store.ColNullFloat32{ColName: m.Column}
			gauges = append(gauges, c)
			b.Columns = append(b.Columns, c)
		}
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for n := range nodes {
		for s := range instants {
			for g := range 8 {
				tm.V = append(tm.V, t0+int64(s)*1000)
				cluster.Append(fmt.Sprintf("c%d", n%4))
				node.Append(fmt.Sprintf("node-%05d", n))
				rack.Append(fmt.Sprintf("rack-%03d", n/32))
				pool.Append([]string{"train", "infer"}[n%2])
				gpu.V = append(gpu.V, uint8(g))
				uuid.Append(fmt.Sprintf("GPU-%08x-%02d", n, g))
				parent.Append("")
				model.Append("NVIDIA H100 80GB HBM3")
				job.Append(fmt.Sprintf("job-%d", n/4))
				driver.Append("550.54.15")
				agent.Append(fmt.Sprintf("agent-%05d", n))
				seq.V = append(seq.V, uint64(s))
				for j, c := range gauges {
					c.Append(float32(n+s+g+j)*0.5, (n+j)%5 == 0)
				}
				for j, c := range counters {
					c.Append(uint64(n*1000+s*10+g+j), (n+j+len(gauges))%5 == 0)
				}
			}
		}
	}
	return b
}

// BenchmarkPrepareBlock prepares one 100k-row gpu_samples block for each transport up to the
// bytes it sends: for the server, fresh driver columns (as PrepareBatch makes them from the
// server's header) filled and encoded as the batch's Send encodes them before compression; for
// chDB, the Native data its Insert writes for the engine. "server/per-row slices" is the server
// transport before #17 (each column expanded to []time.Time, []string, []*float32, []*uint64 for
// the driver's Append), kept here as the baseline.
func BenchmarkPrepareBlock(b *testing.B) {
	blk := samplesBlock(1250, 10)
	rows := blk.Rows()
	if rows != 100_000 {
		b.Fatalf("block of %d rows, want 100000", rows)
	}
	// Buffers reused from block to block, as the transports reuse theirs; grown before measuring.
	var scratch []byte
	var sent proto.Buffer
	server := func(fill func([]column.Interface) error) func() error {
		return func() error {
			cols := batchColumns(b, blk, nil)
			if err := fill(cols); err != nil {
				return err
			}
			sent.Reset()
			return (&chproto.Block{Columns: cols}).Encode(&sent, 0)
		}
	}
	for _, bm := range []struct {
		name    string
		prepare func() error
	}{
		{"server/per-row slices", server(func(cols []column.Interface) error {
			for i, c := range blk.Columns {
				if _, err := cols[i].Append(columnValues(c)); err != nil {
					return err
				}
			}
			return nil
		})},
		{"server/native decode", server(func(cols []column.Interface) error { return appendBlock(cols, blk, &scratch) })},
		{"chdb/native", func() error {
			scratch = blk.AppendNative(scratch[:0])
			return nil
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			if err := bm.prepare(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			for b.Loop() {
				if err := bm.prepare(); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			n := float64(b.N) * float64(rows)
			b.ReportMetric(float64(elapsed.Nanoseconds())/n, "ns/row")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/row")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/row")
		})
	}
}
