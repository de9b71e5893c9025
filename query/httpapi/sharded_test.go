package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query/failseed"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

// readCluster is a clickhouse-local configuration whose cluster "fleet" has two shards: the first
// is this engine itself (its host and port are the configuration's own tcp_port, so the engine
// reads it locally; nothing listens), the second a host that refuses connections, which the
// Distributed tables skip (skip_unavailable_shards, below). Every row is on shard 1, so an answer
// through the read database must equal the shard database's; the two shards make the engine
// plan the queries as over a cluster, where IN and JOIN over Distributed tables are refused
// unless distributed_product_mode allows them.
const readCluster = `<clickhouse><tcp_port>9000</tcp_port><remote_servers><fleet>
<shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard>
<shard><replica><host>127.0.0.2</host><port>9000</port></replica></shard>
</fleet></remote_servers></clickhouse>
`

// Every endpoint answers through a sharded cluster's read database (migrate --shard-database:
// Distributed tables over the shard database) exactly as on the shard database itself, under the
// reader's settings (store.Limits); with the engine's default distributed_product_mode the failure
// reports, whose subqueries read Distributed tables, are refused. It runs in a child test process,
// whose engine is configured with the cluster.
func TestShardedReadPaths(t *testing.T) {
	if !testenv.ConfiguredChild(t, readCluster) {
		return
	}
	ctx := context.Background()
	read, shard := testenv.CHDBPair(t, "_shard")
	shardDB := shard.Database()
	if _, err := migrate.Apply(ctx, shard, nil); err != nil {
		t.Fatal(err)
	}
	if err := failseed.CheckCatalog(ctx, shard); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	if err := failseed.Write(ctx, shard, at); err != nil {
		t.Fatal(err)
	}
	if _, err := (seed.Fleet{Seed: 5, Nodes: 4, GPUsPerNode: 8, Clusters: []string{"c1", "c2"},
		From: at.Add(-2 * time.Hour), To: at, Step: 30 * time.Second}).Write(ctx, shard); err != nil {
		t.Fatal(err)
	}
	stmts, err := migrate.Distributed(read.Database(), shardDB, "fleet")
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range stmts {
		stmt = strings.Replace(stmt, " ON CLUSTER 'fleet'", "", 1)
		if strings.Contains(stmt, "ENGINE = Distributed(") {
			stmt += " SETTINGS skip_unavailable_shards = 1"
		}
		if err := read.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	serve := func(s store.Store) *httptest.Server {
		srv := httptest.NewServer(httpapi.Handler(s, func() time.Time { return at }))
		t.Cleanup(srv.Close)
		return srv
	}
	reader := func(db string) store.Store {
		rd, err := chdb.OpenReader(testenv.DataDir(t), db, testenv.LibCHDB(t), store.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rd.Close() })
		return rd
	}
	local, sharded := serve(reader(shardDB)), serve(reader(read.Database()))
	// The writer's session has the engine's defaults, distributed_product_mode = 'deny' among them.
	bare := serve(read)
	fetch := func(srv *httptest.Server, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{
		"/api/v1/summary?since=2h",
		"/api/v1/series?metric=gpu_util&agg=p99&by=cluster&step=5m&since=2h",
		"/api/v1/series?metric=temp_gpu_c&agg=max&by=node&since=2h",
		"/api/v1/series?metric=throttle_reasons&agg=share&reason=sw_thermal&step=5m&since=2h",
		"/api/v1/series?metric=energy_mj&agg=increase&by=cluster&step=10m&since=2h",
		"/api/v1/top?metric=gpu_util&agg=avg&order=asc&k=3&since=2h",
		"/api/v1/silent?lookback=3h&silent=2m",
		"/api/v1/stragglers?since=2h&ratio=0.5",
		"/api/v1/events?by=node&since=3h",
		"/api/v1/event_log?since=3h",
		"/api/v1/jobs?since=2h",
		"/api/v1/power?since=30m",
		"/api/v1/health",
		"/api/v1/drain",
		"/api/v1/interruptions?since=1h",
		"/api/v1/sql?since=2h&sql=" + url.QueryEscape(`SELECT node, count() AS n, max(gpu_util) AS top FROM gpu_samples WHERE $__timeFilter(time) GROUP BY node ORDER BY node`),
	} {
		codeL, want := fetch(local, path)
		codeS, got := fetch(sharded, path)
		if codeL != http.StatusOK || len(want) < 20 {
			t.Errorf("%s on the shard database: %d %s", path, codeL, want)
			continue
		}
		if codeS != http.StatusOK || got != want {
			t.Errorf("%s through the read database: %d\n%s\nwant the shard database's\n%s", path, codeS, got, want)
		}
	}
	for _, path := range []string{"/api/v1/drain", "/api/v1/interruptions?since=1h"} {
		if code, body := fetch(bare, path); code == http.StatusOK || !strings.Contains(body, "DISTRIBUTED_IN_JOIN_SUBQUERY_DENIED") {
			t.Errorf("%s without the reader's distributed_product_mode: %d %s; want the engine's refusal", path, code, body)
		}
	}
}
