// Package chaos holds the fault matrix: the whole pipeline (simulated agents with their spools,
// real Kafka brokers — one, or a three-broker KRaft cluster —, ingest and the real ClickHouse
// engine) run once per fault, each bounded in time with fixed seeds, and after each the rows in
// gpu_samples, gpu_events and every rollup are compared with what the sources produced, counted
// where they were produced rather than read back from the pipeline.
//
// It is a test behind the chaos build tag, run by `make chaos` (and by CI after `make test`):
//
//	make chaos
//
// prints one table — fault | injected | expected | stored (raw) | stored (rollups) | lost |
// duplicated | peak RSS — and fails on any loss or duplicate. docs/chaos.md explains each fault.
package chaos
