package migrate

import (
	"fmt"
	"regexp"

	"github.com/gpufleet/gpufleet/internal/store"
)

// On a ClickHouse cluster the schema is created once, ON CLUSTER, with Replicated engines so that
// every replica holds the same parts and shares insert deduplication (ingest's replay tokens work
// across replicas). The migration files stay written for one server; OnCluster rewrites them.

var (
	createRE = regexp.MustCompile(`^(CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS [A-Za-z0-9_]+\.[A-Za-z0-9_]+)`)
	alterRE  = regexp.MustCompile(`^(ALTER TABLE [A-Za-z0-9_]+\.[A-Za-z0-9_]+|DROP VIEW IF EXISTS [A-Za-z0-9_]+\.[A-Za-z0-9_]+)`)
	engineRE = regexp.MustCompile(`ENGINE = (MergeTree|AggregatingMergeTree|ReplacingMergeTree)\b`)
	windowRE = regexp.MustCompile(`\bnon_replicated_deduplication_window = ([0-9]+)`)
)

// dedupWindowSeconds bounds the replicated form's deduplication window in time as well as count
// (the server's default is an hour or a week, by version): a week, as long as ingest_intents keeps
// the ranges a replay re-cuts, so a worker restarted days after a crash still repeats a token
// ClickHouse remembers.
const dedupWindowSeconds = 7 * 24 * 3600

// OnCluster rewrites one migration statement for cluster: ON CLUSTER after the object name,
// Replicated engines (with the server's default ZooKeeper path and replica macros), and their
// deduplication window (kept in Keeper, shared by the replicas) where a single server's is set:
// a Replicated table ignores non_replicated_deduplication_window.
func OnCluster(stmt, cluster string) string {
	on := "${1} ON CLUSTER " + store.QuoteString(cluster)
	stmt = createRE.ReplaceAllString(stmt, on)
	stmt = alterRE.ReplaceAllString(stmt, on)
	stmt = windowRE.ReplaceAllString(stmt, fmt.Sprintf("replicated_deduplication_window = ${1}, replicated_deduplication_window_seconds = %d", dedupWindowSeconds))
	return engineRE.ReplaceAllString(stmt, "ENGINE = Replicated${1}")
}
