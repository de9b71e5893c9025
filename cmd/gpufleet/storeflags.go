//go:build !agentonly

package main

// The ClickHouse settings of the commands that run beside it (ingest, migrate, query, api).

import (
	"context"
	"fmt"
	"strings"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/backend"
)

const defaultDSN = "chdb://gpufleet-data"

// storeFlags are the ClickHouse settings.
type storeFlags struct {
	dsn     string
	libchdb string
	limits  store.Limits // the read paths' limits (registerLimits)
}

// registerLimits adds the flags that bound every read query (query, api, demo).
func (s *storeFlags) registerLimits(f *flags) {
	d := store.DefaultLimits()
	f.DurationVar(&s.limits.MaxExecutionTime, "query-timeout", d.MaxExecutionTime, "longest a read query runs in ClickHouse (max_execution_time)")
	f.Uint64Var(&s.limits.MaxResultRows, "query-max-rows", d.MaxResultRows, "most rows a read query returns (max_result_rows)")
	f.Uint64Var(&s.limits.MaxResultBytes, "query-max-result-bytes", d.MaxResultBytes, "most bytes a read query's result takes in ClickHouse (max_result_bytes)")
	f.Uint64Var(&s.limits.MaxMemoryUsage, "query-max-memory-bytes", d.MaxMemoryUsage, "most memory one read query uses in ClickHouse (max_memory_usage)")
	f.Uint64Var(&s.limits.MaxRowsToRead, "query-max-rows-to-read", d.MaxRowsToRead, "most rows a read query scans (max_rows_to_read)")
}

func (s *storeFlags) register(f *flags) {
	f.StringVar(&s.dsn, "clickhouse", defaultDSN, "ClickHouse: clickhouse://user:pass@host:9000/db (server) or chdb:///data/dir[?database=db] (embedded)")
	f.StringVar(&s.libchdb, "libchdb", "", "path of libchdb.so for chdb:// (default: search "+strings.Join([]string{"$GPUFLEET_LIBCHDB", "next to the binary", "/usr/local/lib"}, ", ")+")")
}

func (s *storeFlags) open(ctx context.Context) (store.Store, error) {
	if _, err := backend.Parse(s.dsn); err != nil {
		return nil, usageError{fmt.Errorf("--clickhouse: %w", err)}
	}
	return backend.Open(ctx, s.dsn, backend.Options{LibCHDB: s.libchdb})
}

// openReader opens the store for a read path: read-only, with the query limits.
func (s *storeFlags) openReader(ctx context.Context) (store.Store, error) {
	if _, err := backend.Parse(s.dsn); err != nil {
		return nil, usageError{fmt.Errorf("--clickhouse: %w", err)}
	}
	return backend.OpenReader(ctx, s.dsn, backend.Options{LibCHDB: s.libchdb}, s.limits)
}

// redact hides a DSN's password and secret-like parameters for logs.
func redact(dsn string) string { return backend.Redact(dsn) }

// explainMissingSchema adds the fix to the engine's "table doesn't exist".
func explainMissingSchema(err error) error {
	if strings.Contains(err.Error(), "UNKNOWN_TABLE") || strings.Contains(err.Error(), "UNKNOWN_DATABASE") {
		return fmt.Errorf("%w\n(the schema is missing: run 'gpufleet migrate' with the same --clickhouse)", err)
	}
	return err
}
