//go:build !agentonly

package main

// The commands that run beside ClickHouse; the agent-only build leaves them out (agentonly.go).
func serverCommands() []command {
	return []command{
		{"ingest", "consume Kafka and insert into ClickHouse", runIngest},
		{"migrate", "create or upgrade the ClickHouse schema", runMigrate},
		{"query", "print a fleet summary, a report or a metric's time series from ClickHouse", runQuery},
		{"api", "serve the query layer as JSON over HTTP", runAPI},
		{"demo", "run the whole pipeline in one process on embedded defaults", runDemo},
	}
}
