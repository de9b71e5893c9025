package migrate

import (
	"regexp"

	"github.com/gpufleet/gpufleet/store"
)

// On a ClickHouse cluster the schema is created once, ON CLUSTER, with Replicated engines so that
// every replica holds the same parts and shares insert deduplication (ingest's replay tokens work
// across replicas). The migration files stay written for one server; OnCluster rewrites them.

var (
	createRE = regexp.MustCompile(`^(CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS [A-Za-z0-9_]+\.[A-Za-z0-9_]+)`)
	alterRE  = regexp.MustCompile(`^(ALTER TABLE [A-Za-z0-9_]+\.[A-Za-z0-9_]+|DROP VIEW IF EXISTS [A-Za-z0-9_]+\.[A-Za-z0-9_]+)`)
	engineRE = regexp.MustCompile(`ENGINE = (MergeTree|AggregatingMergeTree|ReplacingMergeTree)\b`)
)

// OnCluster rewrites one migration statement for cluster: ON CLUSTER after the object name, and
// Replicated engines (with the server's default ZooKeeper path and replica macros).
func OnCluster(stmt, cluster string) string {
	on := "${1} ON CLUSTER " + store.QuoteString(cluster)
	stmt = createRE.ReplaceAllString(stmt, on)
	stmt = alterRE.ReplaceAllString(stmt, on)
	return engineRE.ReplaceAllString(stmt, "ENGINE = Replicated${1}")
}
