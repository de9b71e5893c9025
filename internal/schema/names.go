package schema

import "strings"

// The names of the tables and views the migrations create, unqualified: store.Table(db, name) puts
// the database in front. Code that reads or writes one names it from here, so that a rename is one
// edit here plus a migration, and TestNamesAreTheMigrations (names_test.go) fails when a migration
// creates something this list lacks or this list names something no migration creates.
// TestNoTableLiterals (literals_test.go) keeps the names from being spelled out elsewhere.
const (
	// GPUSamples holds one row per GPU per sample (0001); every rollup view reads it.
	GPUSamples = "gpu_samples"
	// GPUEvents holds XID errors, throttling and the other discrete events (0001).
	GPUEvents = "gpu_events"
	// IngestIntents records what ingest is about to insert from each Kafka range, so that a
	// restarted writer inserts the same blocks with the same tokens (0002).
	IngestIntents = "ingest_intents"
	// IngestFolds records the Kafka range of each fold ingest is about to insert (0027),
	// as IngestIntents does a batch's: a replay folds the same range under the same token.
	IngestFolds = "ingest_folds"
	// IngestGaps records jumps in an agent's sequence numbers: batches that never arrived (0003).
	IngestGaps = "ingest_gaps"
	// Jobs holds one row per cluster and job id the agents tagged samples with: when it was first
	// and last seen, on how many GPUs and nodes; JobsMV fills it from GPUSamples (0007).
	Jobs = "jobs"
	// XIDCatalog holds NVIDIA's Xid catalog, one row per code, for joins with gpu_events (0021;
	// the rows come from internal/xid/catalog.csv).
	XIDCatalog = "xid_catalog"

	// The rollup levels (Levels), each filled from its From by its materialized view.
	Fleet1m = "fleet_1m"
	GPU1m   = "gpu_1m"
	GPU1h   = "gpu_1h"
	// GPU1hFold is gpu_1h's feed (Level.Feed, 0029): a Null table ingest inserts its folded
	// GPU-hour rows into, which GPU1hFoldMV writes into gpu_1h.
	GPU1hFold = "gpu_1h_fold"
	// ClusterPower1s is each cluster's total power per second (0024, power.go).
	ClusterPower1s = "cluster_power_1s"

	// The materialized views, each named for the table it writes with an _mv suffix (View).
	Fleet1mMV = Fleet1m + viewSuffix
	GPU1mMV   = GPU1m + viewSuffix
	GPU1hMV   = GPU1h + viewSuffix
	JobsMV    = Jobs + viewSuffix
	// GPU1hFoldMV casts GPU1hFold's digest bytes to their states and writes the rows into gpu_1h.
	GPU1hFoldMV = GPU1hFold + viewSuffix
	// ClusterPower1sMV fills ClusterPower1s from GPUSamples.
	ClusterPower1sMV = ClusterPower1s + viewSuffix

	// SchemaMigrations records the applied migrations; migrate creates it, not a migration file.
	SchemaMigrations = "schema_migrations"
)

const viewSuffix = "_mv"

// View is the name of the materialized view that fills table t.
func View(t string) string { return t + viewSuffix }

// IsView reports whether name is one of the materialized views above.
func IsView(name string) bool { return strings.HasSuffix(name, viewSuffix) }

// Names returns every table and view name above, tables first.
func Names() []string {
	return []string{GPUSamples, GPUEvents, IngestIntents, IngestFolds, IngestGaps, Jobs, XIDCatalog, Fleet1m, GPU1m, GPU1h,
		Fleet1mMV, GPU1mMV, GPU1hMV, JobsMV, ClusterPower1s, ClusterPower1sMV, GPU1hFold, GPU1hFoldMV, SchemaMigrations}
}

// IsFeed reports whether name is a Null table that only passes its inserts to a view (Level.Feed):
// it holds no rows to read.
func IsFeed(name string) bool { return name == GPU1hFold }
