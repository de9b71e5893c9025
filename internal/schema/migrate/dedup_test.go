package migrate_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// sampleBlock is a few gpu_samples rows of two GPUs within the last hour (inside every table's TTL),
// with a job so that the jobs view takes them too.
func sampleBlock(now time.Time) *store.Block {
	tm := &store.ColDateTime64{ColName: "time"}
	cluster, node, uuid, model, job := &store.ColLowCardString{ColName: "cluster"}, &store.ColLowCardString{ColName: "node"},
		&store.ColLowCardString{ColName: "uuid"}, &store.ColLowCardString{ColName: "model"}, &store.ColLowCardString{ColName: "job_id"}
	gpu := &store.ColUInt8{ColName: "gpu"}
	util := &store.ColNullFloat32{ColName: "gpu_util"}
	energy := &store.ColNullUInt64{ColName: "energy_mj"}
	power := &store.ColNullFloat32{ColName: "power_w"} // cluster_power_1s sums it
	start := now.Truncate(time.Hour).UnixMilli()
	for i := range 6 {
		tm.V = append(tm.V, start+int64(i/2)*1000)
		cluster.Append("c")
		node.Append("n")
		gpu.V = append(gpu.V, uint8(i%2))
		uuid.Append(fmt.Sprintf("GPU-%d", i%2))
		model.Append("H100")
		job.Append("job-1")
		util.Append(float32(10*i+5), false)
		energy.Append(uint64(1000+i), false)
		power.Append(float32(300+i), false)
	}
	return &store.Block{Columns: []store.Column{tm, cluster, node, gpu, uuid, model, job, util, energy, power}}
}

var viewTargetRE = regexp.MustCompile(`\bTO ([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)`)

// totals is, per table fed by a materialized view and for gpu_samples, its rows and the sum of every
// sum-aggregated column: what a replay counted twice would change.
func totals(t *testing.T, s store.Store) map[string][]float64 {
	t.Helper()
	ctx := context.Background()
	db := store.QuoteString(s.Database())
	r, err := s.Query(ctx, "SELECT create_table_query FROM system.tables WHERE database = "+db+" AND engine = 'MaterializedView'")
	if err != nil {
		t.Fatal(err)
	}
	tables := []string{"gpu_samples"}
	for _, row := range r.Rows {
		if m := viewTargetRE.FindStringSubmatch(row[0].(string)); m != nil && !slices.Contains(tables, m[2]) {
			tables = append(tables, m[2])
		}
	}
	for _, want := range schema.SampleViews() {
		if !slices.Contains(tables, want) {
			t.Fatalf("found the view targets %v, want %v at least", tables[1:], schema.SampleViews())
		}
	}
	out := map[string][]float64{}
	for _, table := range tables {
		r, err := s.Query(ctx, "SELECT name FROM system.columns WHERE database = "+db+" AND table = "+store.QuoteString(table)+
			" AND type LIKE 'SimpleAggregateFunction(sum,%' ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		exprs := []string{"toFloat64(count())"}
		for _, row := range r.Rows {
			exprs = append(exprs, "toFloat64(sum("+row[0].(string)+"))")
		}
		if table == "gpu_samples" {
			exprs = append(exprs, "toFloat64(sum(gpu_util))", "toFloat64(sum(energy_mj))")
		}
		r, err = s.Query(ctx, "SELECT "+strings.Join(exprs, ", ")+" FROM "+store.Table(s.Database(), table))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range r.Rows[0] {
			f, _ := v.(float64)
			out[table] = append(out[table], f)
		}
	}
	return out
}

// A block inserted three times with one token is stored once in gpu_samples and counted once in every
// table a view fills (fleet_1m, gpu_1m, gpu_1h, jobs, cluster_power_1s, and any added later); the same rows under another
// token are not a replay and are counted again everywhere. Before 0017 the view targets had no
// deduplication window and each replay added the block again (checked: with migrate --to 16 this
// test sees every rollup sum tripled).
func TestReplayedInsertCountsOnceInEveryRollup(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	b := sampleBlock(time.Now())
	insert := func(token string) {
		t.Helper()
		if err := s.Insert(ctx, "gpu_samples", b, token); err != nil {
			t.Fatal(err)
		}
	}
	insert("gpu.samples/0/0-9")
	once := totals(t, s)
	for table, v := range once {
		if v[0] == 0 || !slices.ContainsFunc(v[1:], func(f float64) bool { return f > 0 }) {
			t.Fatalf("%s holds %v after one insert: the block did not reach it", table, v)
		}
	}
	insert("gpu.samples/0/0-9")
	insert("gpu.samples/0/0-9")
	for table, got := range totals(t, s) {
		if !slices.Equal(got, once[table]) {
			t.Errorf("%s after the same token three times: %v, want one insert's %v", table, got, once[table])
		}
	}
	insert("gpu.samples/0/10-19") // same rows, another range: not a replay
	for table, got := range totals(t, s) {
		for i, v := range got {
			if i == 0 && table != "gpu_samples" {
				continue // rollup rows of one key may have merged; their sums must still double
			}
			if v != 2*once[table][i] {
				t.Errorf("%s after a second token: %v, want twice %v", table, got, once[table])
				break
			}
		}
	}
}

// Every table an insert with a dedup token writes, directly or through a view, keeps a window; the
// cluster form turns each into the replicated window (see TestOnClusterGolden).
func TestDedupWindows(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT name, create_table_query LIKE '%non_replicated_deduplication_window = 10000%' FROM system.tables WHERE database = "+
		store.QuoteString(s.Database())+" AND engine LIKE '%MergeTree' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var without []string
	for _, row := range r.Rows {
		// ingest_intents, ingest_folds and schema_migrations are written without tokens
		// (ReplacingMergeTree by key); xid_catalog only by its migration, which truncates and reloads
		// it without deduplication.
		if row[1].(uint64) != 1 && !slices.Contains([]string{"ingest_intents", "ingest_folds", "schema_migrations", "xid_catalog"}, row[0].(string)) {
			without = append(without, row[0].(string))
		}
	}
	if len(without) > 0 {
		t.Errorf("tables without a deduplication window: %v", without)
	}
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS d.t (x UInt8) ENGINE = MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 10000",
		"ALTER TABLE d.t MODIFY SETTING non_replicated_deduplication_window = 10000",
	} {
		got := migrate.OnCluster(stmt, "fleet")
		if strings.Contains(got, "non_replicated") || !strings.Contains(got, "replicated_deduplication_window = 10000, replicated_deduplication_window_seconds = 604800") {
			t.Errorf("OnCluster(%q) = %q, want the replicated window", stmt, got)
		}
	}
}
