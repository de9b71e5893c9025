package query_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/migrate"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/store"
	"github.com/gpufleet/gpufleet/wire"
	"github.com/gpufleet/gpufleet/wire/wirepb"
)

// BenchmarkFleetP99Trend seeds a simulated 1,024-GPU fleet (4 clusters, 3 GPU models) sampled
// every second, then asks for the fleet's p99 GPU utilisation at a 1-minute step over the whole
// window, from the raw table and from the rollup the query layer picks, and reports the time and
// rows read of each. The window defaults to 2 hours (GPUFLEET_BENCH_HOURS=24 for a day):
//
//	go test -run '^$' -bench FleetP99Trend -benchtime 10x ./query/
func BenchmarkFleetP99Trend(b *testing.B) {
	hours := 2
	if h, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_HOURS")); err == nil && h > 0 {
		hours = h
	}
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	to := now.Truncate(time.Minute)
	from := to.Add(-time.Duration(hours) * time.Hour)
	seedSimFleet(b, st, from, to, now)

	for _, src := range []query.Source{query.SourceRaw, query.SourceAuto} {
		name := map[query.Source]string{query.SourceRaw: "raw", query.SourceAuto: "rollup"}[src]
		b.Run(name, func(b *testing.B) {
			q := &query.Query{Metric: "gpu_util", Agg: query.P99, From: from, To: to, Step: time.Minute, Source: src}
			c, err := q.Compile(st.Database())
			if err != nil {
				b.Fatal(err)
			}
			var rowsRead uint64
			var points int
			for range b.N {
				r, err := st.QueryWith(ctx, c.SQL, c.Params)
				if err != nil {
					b.Fatal(err)
				}
				rowsRead, points = r.RowsRead, len(r.Rows)
			}
			if points != hours*60 {
				b.Fatalf("%d points from %s, want %d", points, c.Table, hours*60)
			}
			b.ReportMetric(float64(rowsRead), "rows_read")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
			b.Logf("%s reads %s: %d rows for %d points", name, c.Table, rowsRead, points)
		})
	}
}

// seedSimFleet writes 128 simulated 8-GPU nodes in 4 clusters sampled every second over [from, to).
func seedSimFleet(b *testing.B, st store.Store, from, to, now time.Time) {
	b.Helper()
	ctx := context.Background()
	var nodes []*sim.Node
	for i := range 128 {
		nodes = append(nodes, sim.NewNode(9, fmt.Sprintf("cl-%d", i%4), i, 8))
	}
	builder := ingest.NewSampleBuilder()
	var dec wire.SampleDecoder
	for t, s := from, uint64(1); t.Before(to); t, s = t.Add(time.Second), s+1 {
		for _, n := range nodes {
			batch := &wirepb.SampleBatch{AgentId: n.Name, Seq: s, Cluster: n.Cluster, Node: n.Name}
			n.Sample(t, batch, nil)
			data, err := wire.EncodeSamples(batch)
			if err != nil {
				b.Fatal(err)
			}
			sb, err := dec.Decode(data)
			if err != nil {
				b.Fatal(err)
			}
			if err := builder.Add(sb, now); err != nil {
				b.Fatal(err)
			}
		}
		if builder.Block().Rows() >= 500_000 {
			if err := st.Insert(ctx, "gpu_samples", builder.Block(), ""); err != nil {
				b.Fatal(err)
			}
			builder.Reset()
		}
	}
	if err := st.Insert(ctx, "gpu_samples", builder.Block(), ""); err != nil {
		b.Fatal(err)
	}
	for _, t := range []string{"gpu_samples", "fleet_1m", "gpu_1m", "gpu_1h"} {
		if err := st.Exec(ctx, "OPTIMIZE TABLE "+store.Table(st.Database(), t)+" FINAL"); err != nil {
			b.Fatal(err)
		}
	}
}
