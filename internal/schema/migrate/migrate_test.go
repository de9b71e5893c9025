package migrate_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestApplyTwiceChangesNothing(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	first, err := migrate.Apply(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || first[len(first)-1] != migrate.Latest() {
		t.Fatalf("first run applied %v, want up to %d", first, migrate.Latest())
	}
	second, err := migrate.Apply(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second run applied %v, want nothing", second)
	}
}

// Every metric in the registry has a column of the right type: the schema and the catalogue agree.
func TestSchemaMatchesRegistry(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT name, type FROM system.columns WHERE database = "+store.QuoteString(s.Database())+
		" AND table = 'gpu_samples'")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, row := range r.Rows {
		types[row[0].(string)] = row[1].(string)
	}
	for _, m := range gpumetric.All() {
		want := m.Kind.ColumnType()
		if got := types[m.Column]; got != want {
			t.Errorf("column %s: type %q, want %q", m.Column, got, want)
		}
	}
	for _, col := range []string{"time", "cluster", "node", "gpu", "uuid", "model", "job_id", "agent_id", "seq"} {
		if _, ok := types[col]; !ok {
			t.Errorf("gpu_samples lacks %s", col)
		}
	}
}

func TestLoadRejectsBadDatabase(t *testing.T) {
	if _, err := migrate.Load("x; DROP TABLE y"); err == nil {
		t.Fatal("Load accepted an unsafe database name")
	}
	ms, err := migrate.Load("gpufleet")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(ms, func(a, b migrate.Migration) int { return a.Version - b.Version }) {
		t.Fatal("migrations not sorted")
	}
}

// A migration interrupted part-way (its first statements ran, it was never recorded) completes on
// the next run: statements are written to be re-runnable (IF NOT EXISTS, idempotent ALTERs).
func TestApplyCompletesHalfMigratedDatabase(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	db := s.Database()
	// As if 0005 stopped after its first table and view, and 0006 never ran.
	for _, stmt := range []string{
		"DELETE FROM " + db + ".schema_migrations WHERE version >= 5",
		"DROP TABLE " + db + ".gpu_1h_mv", "DROP TABLE " + db + ".gpu_1h",
		"DROP TABLE " + db + ".gpu_1m_mv", "DROP TABLE " + db + ".gpu_1m",
	} {
		if err := s.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	applied, err := migrate.Apply(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for v := 5; v <= migrate.Latest(); v++ {
		want = append(want, v)
	}
	if fmt.Sprint(applied) != fmt.Sprint(want) {
		t.Errorf("re-run applied %v, want the unrecorded versions from 5", applied)
	}
	r, err := s.Query(ctx, "SELECT count() FROM system.tables WHERE database = '"+db+"' AND name IN ('gpu_1m', 'gpu_1m_mv', 'gpu_1h', 'gpu_1h_mv', 'fleet_1m')")
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Rows[0][0].(uint64); n != 5 {
		t.Errorf("%d of the 5 rollup tables and views exist after completing, want 5", n)
	}
}

// The cluster form of every migration is pinned in testdata/on_cluster.golden.sql: ON CLUSTER on
// every CREATE, ALTER and DROP, Replicated engines. (No ClickHouse cluster runs here; the statements are
// checked as text, and the single-server form they derive from runs in every test.)
func TestOnClusterGolden(t *testing.T) {
	ms, err := migrate.Load("gpufleet")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "-- %04d_%s\n", m.Version, m.Name)
		for _, stmt := range m.Statements {
			b.WriteString(migrate.OnCluster(stmt, "fleet") + "\n;\n")
		}
	}
	got := b.String()
	for _, bad := range []string{"ENGINE = MergeTree", "ENGINE = AggregatingMergeTree", "ENGINE = ReplacingMergeTree"} {
		if strings.Contains(got, bad) {
			t.Errorf("cluster form still has %q", bad)
		}
	}
	if n, m := strings.Count(got, "ON CLUSTER 'fleet'"), strings.Count(got, "CREATE ")+strings.Count(got, "ALTER TABLE")+strings.Count(got, "DROP VIEW"); n != m {
		t.Errorf("%d ON CLUSTER clauses for %d CREATE/ALTER/DROP statements", n, m)
	}
	path := filepath.Join("testdata", "on_cluster.golden.sql")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/schema/migrate -run OnCluster -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("cluster form differs from %s (rerun with -update if intended)", path)
	}
}

// Retention is a setting, not a migration: it changes the TTL of the raw tables in place.
func TestSetRetention(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	if err := migrate.SetRetention(ctx, s, migrate.Retention{SamplesDays: 7}, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT name, engine_full FROM system.tables WHERE database = '"+s.Database()+"' AND name IN ('gpu_samples', 'gpu_events') ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	events, samples := r.Rows[0][1].(string), r.Rows[1][1].(string)
	if !strings.Contains(samples, "toIntervalDay(7)") || !strings.Contains(events, "toIntervalDay(180)") {
		t.Errorf("TTLs after setting samples to 7 days:\nsamples: %s\nevents: %s", samples, events)
	}
	if err := migrate.SetRetention(ctx, s, migrate.Retention{EventsDays: -3}, migrate.Options{}); err == nil {
		t.Error("a negative retention was accepted")
	}
}

// Latest reads only the files' names; it must agree with the migrations Load parses.
func TestLatestIsTheLastLoaded(t *testing.T) {
	ms, err := migrate.Load("gpufleet")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || migrate.Latest() != ms[len(ms)-1].Version {
		t.Fatalf("Latest() = %d, Load's last = %+v", migrate.Latest(), ms[len(ms)-1:])
	}
}

// No ClickHouse cluster runs here, so the engine's own parser checks the cluster form: every
// statement OnCluster writes parses (formatQuery in chDB, the parser a server runs), and what the
// parser reads back says ON CLUSTER on every DDL statement and, for each table, a Replicated engine
// with the replicated deduplication window where the single-server form set one (a Null table
// stays Null). TRUNCATE and
// INSERT (0021's XID catalogue) stay as on one server: a Replicated table replicates them itself,
// in order through its log, where a TRUNCATE run ON CLUSTER by every replica could land after the
// INSERT had replicated and empty the table again.
func TestOnClusterParses(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	ms, err := migrate.Load("gpufleet")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		for i, stmt := range m.Statements {
			c := migrate.OnCluster(stmt, "fleet")
			r, err := s.QueryWith(ctx, "SELECT formatQuery({q:String})", store.Params{"q": store.StringParam(c)})
			if err != nil || len(r.Rows) != 1 {
				t.Errorf("%04d statement %d does not parse: %v\n%s", m.Version, i+1, err, c)
				continue
			}
			n++
			got, _ := r.Rows[0][0].(string)
			if dml := strings.HasPrefix(got, "TRUNCATE") || strings.HasPrefix(got, "INSERT"); dml == strings.Contains(got, "ON CLUSTER") {
				t.Errorf("%04d statement %d: ON CLUSTER on a TRUNCATE or INSERT, or missing on DDL:\n%s", m.Version, i+1, got)
			}
			// A Null table (a feed, schema.IsFeed) holds nothing to replicate.
			if strings.Contains(stmt, "ENGINE = ") && !strings.Contains(stmt, "ENGINE = Null") && !strings.Contains(got, "ENGINE = Replicated") {
				t.Errorf("%04d statement %d: the parser reads no Replicated engine:\n%s", m.Version, i+1, got)
			}
			if strings.Contains(stmt, "non_replicated_deduplication_window") &&
				(!strings.Contains(got, "replicated_deduplication_window = ") || strings.Contains(got, "non_replicated_deduplication_window")) {
				t.Errorf("%04d statement %d: the parser reads no replicated deduplication window:\n%s", m.Version, i+1, got)
			}
		}
	}
	if n == 0 {
		t.Fatal("no statement parsed")
	}
	// The check can fail: a cluster clause in the wrong place does not parse.
	if _, err := s.QueryWith(ctx, "SELECT formatQuery({q:String})", store.Params{"q": store.StringParam(
		"CREATE TABLE IF NOT EXISTS gpufleet.t (a UInt8) ENGINE = ReplicatedMergeTree ON CLUSTER 'fleet' ORDER BY a")}); err == nil {
		t.Error("formatQuery accepted ON CLUSTER after the engine")
	}
	t.Logf("%d statements parsed", n)
}
