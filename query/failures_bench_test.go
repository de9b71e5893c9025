package query_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	fleetseed "github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// BenchmarkFailureReports times the three failure reports on a simulated 1,024-GPU fleet sampled
// every 10 s for 2 hours, 64 more GPUs that stopped reporting 30 minutes before the end, a GPU in
// 50 in reset_gpu and an XID 79 on one in 100, and reports each one's time and rows read:
//
//	go test -run '^$' -bench FailureReports -benchtime 5x ./query/
func BenchmarkFailureReports(b *testing.B) {
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Minute)
	from := at.Add(-2 * time.Hour)
	if _, err := (fleetseed.Fleet{Seed: 9, Nodes: 128, GPUsPerNode: 8, Clusters: []string{"cl-0", "cl-1", "cl-2", "cl-3"},
		From: from, To: at, Step: 10 * time.Second}).Write(ctx, st); err != nil {
		b.Fatal(err)
	}
	if _, err := (fleetseed.Fleet{Seed: 10, Nodes: 8, GPUsPerNode: 8, Clusters: []string{"gone"},
		From: from, To: at.Add(-30 * time.Minute), Step: 10 * time.Second}).Write(ctx, st); err != nil {
		b.Fatal(err)
	}
	db := st.Database()
	gpus := "(SELECT DISTINCT cluster, node, gpu, uuid FROM " + store.Table(db, "gpu_samples") + ")"
	for _, sql := range []string{
		fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, kind, code, message, seq) SELECT fromUnixTimestamp64Milli(%d), cluster, node, gpu, uuid, 'health', 3, 'bench', 1 FROM %s WHERE cityHash64(uuid) %% 50 = 0",
			store.Table(db, "gpu_events"), at.Add(-20*time.Minute).UnixMilli(), gpus),
		fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, kind, code, seq) SELECT fromUnixTimestamp64Milli(%d), cluster, node, gpu, uuid, 'xid', 79, 2 FROM %s WHERE cityHash64(uuid) %% 100 = 1",
			store.Table(db, "gpu_events"), at.Add(-40*time.Minute).UnixMilli(), gpus),
	} {
		if err := st.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	win := query.FleetWindow{At: at}
	health, hp, err := query.HealthSQL(db, win)
	if err != nil {
		b.Fatal(err)
	}
	drain, dp, err := query.DrainSQL(db, win, query.MaxDrainRows)
	if err != nil {
		b.Fatal(err)
	}
	intr, ip, err := query.InterruptionsSQL(db, query.JobWindow{From: from, To: at, At: at})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, sql string
		p         store.Params
	}{{"health", health, hp}, {"drain", drain, dp}, {"interruptions", intr, ip}} {
		b.Run(c.name, func(b *testing.B) {
			var r *store.Result
			for range b.N {
				if r, err = st.QueryWith(ctx, c.sql, c.p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(r.RowsRead), "rows_read")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
			b.Logf("%s: %d rows", c.name, len(r.Rows))
		})
	}
}
