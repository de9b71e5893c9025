package migrate_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// shardedForm is what migrate --on-cluster fleet --shard-database gpufleet_shard runs that the
// unsharded cluster form does not: the statements Sharded changes, then the read database.
func shardedForm(t *testing.T) string {
	t.Helper()
	ms, err := migrate.Load("gpufleet_shard")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range ms {
		for i, stmt := range m.Statements {
			if s := migrate.Sharded(stmt, "fleet"); s != migrate.OnCluster(stmt, "fleet") {
				fmt.Fprintf(&b, "-- %04d_%s statement %d\n%s\n;\n", m.Version, m.Name, i+1, s)
			}
		}
	}
	b.WriteString("-- the read database\n")
	stmts, err := migrate.Distributed("gpufleet", "gpufleet_shard", "fleet")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		b.WriteString(s + "\n;\n")
	}
	return b.String()
}

func TestShardedGolden(t *testing.T) {
	got := shardedForm(t)
	path := filepath.Join("testdata", "sharded.golden.sql")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/schema/migrate -run ShardedGolden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("sharded form differs from %s (rerun with -update if intended)", path)
	}
}

var replicaArgsRE = regexp.MustCompile(`ENGINE = Replicated[A-Za-z]*MergeTree\('([^']*)', '([^']*)'\)`)

// Every statement of the sharded form parses (no cluster runs here; formatQuery is the server's
// parser), and the parse says what sharding needs: the sharded tables keep the default Keeper path
// (whose {shard} makes each shard its own replication group), the catalogue and the migrations'
// record one group over all hosts, and the read database a Distributed table for every sharded
// table and a view for each of the other two.
func TestShardedParses(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	parse := func(q string) (string, error) {
		r, err := s.QueryWith(ctx, "SELECT formatQuery({q:String})", store.Params{"q": store.StringParam(q)})
		if err != nil {
			return "", err
		}
		if len(r.Rows) != 1 {
			return "", fmt.Errorf("%d rows", len(r.Rows))
		}
		got, _ := r.Rows[0][0].(string)
		return strings.Join(strings.Fields(got), " "), nil
	}
	ms, err := migrate.Load("gpufleet_shard")
	if err != nil {
		t.Fatal(err)
	}
	everywhere := map[string]bool{}
	for _, m := range ms {
		for i, stmt := range m.Statements {
			got, err := parse(migrate.Sharded(stmt, "fleet"))
			if err != nil {
				t.Errorf("%04d statement %d does not parse: %v", m.Version, i+1, err)
				continue
			}
			args := replicaArgsRE.FindStringSubmatch(got)
			if !strings.Contains(stmt, "ENGINE = ") {
				continue
			}
			table := strings.TrimPrefix(strings.Fields(strings.TrimPrefix(got, "CREATE TABLE IF NOT EXISTS "))[0], "gpufleet_shard.")
			if slices.Contains(migrate.Everywhere, table) {
				everywhere[table] = true
				if args == nil || strings.Contains(args[1], "{shard}") || !strings.Contains(args[2], "{shard}") {
					t.Errorf("%s: want one replication group over every shard (a path without {shard}, replicas named by it):\n%s", table, got)
				}
			} else if args != nil && !strings.Contains(got, "MATERIALIZED VIEW") {
				t.Errorf("%s: a sharded table with its own Keeper path %q: the default's {shard} keeps shards apart", table, args[1])
			}
		}
	}
	// schema_migrations is created by ApplyWith itself, not by a migration file.
	if got, err := parse(migrate.Sharded(migrate.RecordTableSQL("gpufleet_shard"), "fleet")); err != nil || !strings.Contains(got, "/all") {
		t.Errorf("schema_migrations in the sharded form: %v\n%s", err, got)
	} else {
		everywhere[schema.SchemaMigrations] = true
	}
	if len(everywhere) != len(migrate.Everywhere) {
		t.Errorf("tables held whole on every host: got %v, want %v", everywhere, migrate.Everywhere)
	}

	stmts, err := migrate.Distributed("gpufleet", "gpufleet_shard", "fleet")
	if err != nil {
		t.Fatal(err)
	}
	distributed, views := map[string]bool{}, map[string]bool{}
	for _, stmt := range stmts {
		got, err := parse(stmt)
		if err != nil {
			t.Errorf("does not parse: %v\n%s", err, stmt)
			continue
		}
		if !strings.Contains(got, "ON CLUSTER fleet") {
			t.Errorf("no ON CLUSTER: %s", got)
		}
		if m := regexp.MustCompile(`^CREATE OR REPLACE TABLE gpufleet\.(\w+) ON CLUSTER fleet AS gpufleet_shard\.(\w+) ENGINE = Distributed\('fleet', 'gpufleet_shard', '(\w+)'\)$`).FindStringSubmatch(got); m != nil {
			if m[1] != m[2] || m[2] != m[3] {
				t.Errorf("Distributed table over another table: %s", got)
			}
			distributed[m[1]] = true
		}
		if m := regexp.MustCompile(`^CREATE OR REPLACE VIEW gpufleet\.(\w+) ON CLUSTER fleet AS SELECT \* FROM gpufleet_shard\.(\w+)$`).FindStringSubmatch(got); m != nil && m[1] == m[2] {
			views[m[1]] = true
		}
	}
	for _, n := range schema.Names() {
		switch {
		case schema.IsView(n):
			if distributed[n] || views[n] {
				t.Errorf("materialized view %s in the read database: its inserts run in the shard database", n)
			}
		case schema.IsFeed(n):
			if distributed[n] || views[n] {
				t.Errorf("feed %s in the read database: it holds nothing to read", n)
			}
		case slices.Contains(migrate.Everywhere, n):
			if !views[n] {
				t.Errorf("no view of %s in the read database", n)
			}
		case !distributed[n]:
			t.Errorf("no Distributed table for %s in the read database", n)
		}
	}
	for _, bad := range [][3]string{{"gpufleet", "gpufleet", "fleet"}, {"gpufleet", "x; DROP", "fleet"}, {"gpufleet", "s", ""}} {
		if _, err := migrate.Distributed(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("Distributed%q accepted", bad)
		}
	}
}

// clusterConfig is a clickhouse-local configuration naming a two-shard cluster "fleet", so that
// the engine can create Distributed tables over it. No host of it listens: reading through them
// is not tested here, only what the DDL makes.
const clusterConfig = `<clickhouse><remote_servers><fleet>
<shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard>
<shard><replica><host>127.0.0.2</host><port>9000</port></replica></shard>
</fleet></remote_servers></clickhouse>
`

// The read database made for real by the engine: chDB reads its configuration when it starts, so
// this runs in a child test process whose engine is configured with a cluster. The shard database
// is migrated as on one server (ON CLUSTER needs Keeper),
// the read database's statements run without their ON CLUSTER, and then every Distributed table
// has its shard table's columns, in order and type, also after a migration adds a column, and the
// views read the catalogue.
func TestShardedReadDatabase(t *testing.T) {
	if !testenv.ConfiguredChild(t, clusterConfig) {
		return
	}
	ctx := context.Background()
	read, shard := testenv.CHDBPair(t, "_shard")
	shardDB := shard.Database()
	if r, err := read.Query(ctx, "SELECT count() FROM system.clusters WHERE cluster = 'fleet'"); err != nil || len(r.Rows) != 1 || fmt.Sprint(r.Rows[0][0]) != "2" {
		t.Fatalf("the child engine has no two-shard cluster from its configuration: %v %v", err, r)
	}
	if _, err := migrate.Apply(ctx, shard, nil); err != nil {
		t.Fatal(err)
	}
	makeRead := func() {
		t.Helper()
		stmts, err := migrate.Distributed(read.Database(), shardDB, "fleet")
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range stmts {
			if err := read.Exec(ctx, strings.Replace(stmt, " ON CLUSTER 'fleet'", "", 1)); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}
	columns := func(db, table string) string {
		t.Helper()
		r, err := read.Query(ctx, "SELECT groupArray((name, type)) FROM (SELECT name, type FROM system.columns WHERE database = "+
			store.QuoteString(db)+" AND table = "+store.QuoteString(table)+" ORDER BY position)")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(r.Rows[0][0])
	}
	check := func() {
		t.Helper()
		for _, table := range migrate.ShardedTables() {
			want, got := columns(shardDB, table), columns(read.Database(), table)
			if got != want || want == "[]" {
				t.Errorf("%s: read database columns\n%s\nwant the shard table's\n%s", table, got, want)
			}
			r, err := read.Query(ctx, "SELECT engine FROM system.tables WHERE database = "+store.QuoteString(read.Database())+" AND name = "+store.QuoteString(table))
			if err != nil || len(r.Rows) != 1 || r.Rows[0][0] != "Distributed" {
				t.Errorf("%s: engine %v (%v), want Distributed", table, r, err)
			}
		}
	}
	makeRead()
	check()
	r, err := read.Query(ctx, "SELECT (SELECT count() FROM "+store.Table(read.Database(), schema.XIDCatalog)+"), (SELECT count() FROM "+store.Table(shardDB, schema.XIDCatalog)+")")
	if err != nil {
		t.Fatal(err)
	}
	if n := fmt.Sprint(r.Rows[0][0]); n != fmt.Sprint(r.Rows[0][1]) || n == "0" {
		t.Errorf("the catalogue through the read database: %v rows, the shard database's %v", r.Rows[0][0], r.Rows[0][1])
	}
	if _, err := migrate.Applied(ctx, read); err != nil {
		t.Errorf("the migrations' record through the read database: %v", err)
	}
	// A later migration adding a column: migrate makes the read database again after it.
	if err := shard.Exec(ctx, "ALTER TABLE "+store.Table(shardDB, schema.GPUSamples)+" ADD COLUMN later_metric Nullable(Float32)"); err != nil {
		t.Fatal(err)
	}
	makeRead()
	check()
	if c := columns(read.Database(), schema.GPUSamples); !strings.Contains(c, "later_metric") {
		t.Errorf("the added column is not in the read database: %s", c)
	}
}

// A sharded layout that cannot work is refused before anything is created: no cluster, the shard
// database the read database itself, or a name that is not an identifier.
func TestShardedOptionsRefused(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	databases := func() string {
		r, err := s.Query(ctx, "SELECT groupArray(name) FROM (SELECT name FROM system.databases ORDER BY name)")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(r.Rows[0][0])
	}
	before := databases()
	for _, o := range []migrate.Options{
		{ShardDatabase: "gpufleet_shard"},
		{Cluster: "fleet", ShardDatabase: s.Database()},
		{Cluster: "fleet", ShardDatabase: "x; DROP DATABASE default"},
		{Cluster: "fleet'", ShardDatabase: "gpufleet_shard"},
	} {
		if applied, err := migrate.ApplyWith(ctx, s, nil, o); err == nil || len(applied) != 0 {
			t.Errorf("ApplyWith(%+v) = %v, %v: want refused", o, applied, err)
		}
		if err := migrate.SetRetention(ctx, s, migrate.Retention{SamplesDays: 7}, o); err == nil {
			t.Errorf("SetRetention(%+v) accepted", o)
		}
	}
	if after := databases(); after != before {
		t.Errorf("databases changed by refused options:\n%s\nwas\n%s", after, before)
	}
}
