package migrate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// A sharded cluster (docs/cluster.md) keeps the tables in a shard database: the same migrations,
// created ON CLUSTER with Replicated engines whose default Keeper path holds the {shard} macro, so
// each shard's replicas share that shard's rows and its insert deduplication. Ingest writes there,
// each Kafka partition to one shard (ingest.Config.Shards), so a node's samples, events, gaps and
// replay intents, and the rows its rollup views write, stay on one shard: the views are local, a
// replay meets the token it repeats, and a GPU's rows are never split across shards (the counter
// increases read gpu_1m FINAL, which merges within a shard).
//
// The read database, which the query layer, the API and the plugin use unchanged, holds a
// Distributed table over each shard table under the same name. Two tables are not split by node:
// the XID catalogue and the migrations' record are one replicated table spanning every host
// (Keeper path without {shard}), so that the catalogue is whole wherever a query joins it, and a
// writer on any shard sees the versions migrate applied from one host. The read database reads
// them through views, which run on the host they are asked on.

// Everywhere are the shard database's tables that every host holds whole.
var Everywhere = []string{schema.XIDCatalog, schema.SchemaMigrations}

// everywherePath is the Keeper path and replica name of an Everywhere table: one replication group
// for the cluster. {uuid} is the table's, the same on every host for a table created ON CLUSTER in
// an Atomic database.
const everywherePath = "('/clickhouse/tables/{uuid}/all', '{shard}-{replica}')"

// Sharded rewrites a statement for the shard database: OnCluster, and for the Everywhere tables a
// replication path that spans the shards.
func Sharded(stmt, cluster string) string {
	if m := createRE.FindStringSubmatch(stmt); m != nil && slices.Contains(Everywhere, m[1][strings.LastIndexByte(m[1], '.')+1:]) {
		stmt = engineRE.ReplaceAllString(stmt, "ENGINE = Replicated${1}"+everywherePath)
	}
	return OnCluster(stmt, cluster)
}

// Distributed returns the statements that (re)create the read database db over the shard database
// shardDB on cluster: a Distributed table per sharded table, a view per Everywhere table. They are
// run after every migration, so a table or column a migration added is there too: CREATE OR
// REPLACE copies the shard table's columns as they are now, and holds no data to lose.
func Distributed(db, shardDB, cluster string) ([]string, error) {
	if err := checkSharding(db, shardDB, cluster); err != nil {
		return nil, err
	}
	on := " ON CLUSTER " + store.QuoteString(cluster)
	out := []string{"CREATE DATABASE IF NOT EXISTS " + db + on}
	for _, t := range ShardedTables() {
		out = append(out, fmt.Sprintf("CREATE OR REPLACE TABLE %s%s AS %s ENGINE = Distributed(%s, %s, %s)",
			store.Table(db, t), on, store.Table(shardDB, t), store.QuoteString(cluster), store.QuoteString(shardDB), store.QuoteString(t)))
	}
	for _, t := range Everywhere {
		out = append(out, fmt.Sprintf("CREATE OR REPLACE VIEW %s%s AS SELECT * FROM %s", store.Table(db, t), on, store.Table(shardDB, t)))
	}
	return out, nil
}

// checkSharding names the field of a sharded layout that cannot be used.
func checkSharding(db, shardDB, cluster string) error {
	for _, id := range []struct{ field, v string }{{"database", db}, {"shard database", shardDB}, {"cluster", cluster}} {
		if err := store.CheckIdent(id.field, id.v); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	if db == shardDB {
		return fmt.Errorf("migrate: the shard database must not be the read database %s", db)
	}
	return nil
}

// ShardedTables are the tables split across shards: every table the migrations create but the
// Everywhere ones; the materialized views stay in the shard database, where their inserts run, and
// so do the feeds, which hold nothing to read.
func ShardedTables() []string {
	var out []string
	for _, n := range schema.Names() {
		if schema.IsView(n) || schema.IsFeed(n) || slices.Contains(Everywhere, n) {
			continue
		}
		out = append(out, n)
	}
	return out
}
