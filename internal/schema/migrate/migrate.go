// Package migrate applies the embedded schema migrations (internal/schema/migrations) to a store, in order,
// recording each in a schema_migrations table so that running it again changes nothing.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrations"
	"github.com/gpufleet/gpufleet/internal/store"
)

// Migration is one numbered SQL file.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Load reads and splits the embedded migrations for database db, sorted by version.
func Load(db string) ([]Migration, error) {
	if err := store.CheckIdent("database", db); err != nil {
		return nil, err
	}
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var out []Migration
	for _, f := range files {
		num, name, ok := strings.Cut(strings.TrimSuffix(f, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", f)
		}
		body, err := fs.ReadFile(migrations.FS, f)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", f, err)
		}
		m := Migration{Version: v, Name: name}
		for _, stmt := range strings.Split(string(body), "\n;\n") {
			if s := strings.TrimSpace(stripComments(stmt)); s != "" {
				m.Statements = append(m.Statements, strings.ReplaceAll(s, "{db}", db))
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Latest is the highest migration version this build knows, read from the embedded files' names
// (Load's test proves they are well formed), so asking costs no parsing of the SQL.
func Latest() int {
	files, _ := fs.Glob(migrations.FS, "*.sql") // a constant pattern: the only error is ErrBadPattern
	latest := 0
	for _, f := range files {
		num, _, _ := strings.Cut(f, "_")
		if v, err := strconv.Atoi(num); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// Apply brings the store's database up to the latest migration and returns the versions it applied.
// Every statement is idempotent (IF NOT EXISTS), so a run interrupted half way completes on the
// next one.
func Apply(ctx context.Context, s store.Store, log *slog.Logger) ([]int, error) {
	return ApplyWith(ctx, s, log, Options{})
}

// Options changes how migrations are applied.
type Options struct {
	// Cluster, when set, creates everything ON CLUSTER with Replicated engines (see OnCluster).
	Cluster string
	// ShardDatabase, with Cluster, shards the schema (sharded.go): the migrations create the tables
	// in this database on every host, and the store's database gets the Distributed tables and
	// views over them that the read paths use.
	ShardDatabase string
	// Until, when positive, stops after that version: an upgrade in steps, or a test of data
	// written under an older schema.
	Until int
}

// ApplyWith is Apply with options.
func ApplyWith(ctx context.Context, s store.Store, log *slog.Logger, opts Options) ([]int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := opts.tablesDatabase(s)
	if err != nil {
		return nil, err
	}
	ms, err := Load(db)
	if err != nil {
		return nil, err
	}
	rewrite := func(stmt string) string { return stmt }
	createDB := "CREATE DATABASE IF NOT EXISTS " + db
	switch {
	case opts.ShardDatabase != "":
		rewrite = func(stmt string) string { return Sharded(stmt, opts.Cluster) }
		createDB += " ON CLUSTER " + store.QuoteString(opts.Cluster)
	case opts.Cluster != "":
		rewrite = func(stmt string) string { return OnCluster(stmt, opts.Cluster) }
		createDB += " ON CLUSTER " + store.QuoteString(opts.Cluster)
	}
	if err := s.Exec(ctx, createDB); err != nil {
		return nil, fmt.Errorf("migrate: create database %s: %w", db, err)
	}
	if err := s.Exec(ctx, rewrite(recordTableSQL(db))); err != nil {
		return nil, fmt.Errorf("migrate: create %s: %w", schema.SchemaMigrations, err)
	}
	done, err := appliedIn(ctx, s, db)
	if err != nil {
		return nil, err
	}
	var applied []int
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if opts.Until > 0 && m.Version > opts.Until {
			break
		}
		for i, stmt := range m.Statements {
			if err := s.Exec(ctx, rewrite(stmt)); err != nil {
				return applied, fmt.Errorf("migrate: %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s (version, name) VALUES (%d, %s)",
			store.Table(db, schema.SchemaMigrations), m.Version, store.QuoteString(m.Name))); err != nil {
			return applied, fmt.Errorf("migrate: record %04d: %w", m.Version, err)
		}
		log.Info("applied migration", slog.Int("version", m.Version), slog.String("name", m.Name))
		applied = append(applied, m.Version)
	}
	if opts.ShardDatabase != "" {
		stmts, err := Distributed(s.Database(), opts.ShardDatabase, opts.Cluster)
		if err != nil {
			return applied, err
		}
		for _, stmt := range stmts {
			if err := s.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migrate: read database %s: %w", s.Database(), err)
			}
		}
		log.Info("read database over the shards", slog.String("database", s.Database()), slog.String("shard_database", opts.ShardDatabase),
			slog.Int("tables", len(stmts)-1))
	}
	return applied, nil
}

// tablesDatabase is the database the migrations create the tables in: the store's, or on a
// sharded cluster the shard database.
func (o Options) tablesDatabase(s store.Store) (string, error) {
	if o.Cluster != "" {
		if err := store.CheckIdent("cluster", o.Cluster); err != nil {
			return "", err
		}
	}
	if o.ShardDatabase == "" {
		return s.Database(), nil
	}
	if o.Cluster == "" {
		return "", errors.New("migrate: a shard database needs a cluster")
	}
	return o.ShardDatabase, checkSharding(s.Database(), o.ShardDatabase, o.Cluster)
}

// recordTableSQL creates the table of applied migrations in db, in the single-server form.
func recordTableSQL(db string) string {
	return "CREATE TABLE IF NOT EXISTS " + store.Table(db, schema.SchemaMigrations) +
		" (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
}

// Applied returns the versions recorded in schema_migrations (empty when the table is missing).
func Applied(ctx context.Context, s store.Store) (map[int]bool, error) {
	return appliedIn(ctx, s, s.Database())
}

func appliedIn(ctx context.Context, s store.Store, db string) (map[int]bool, error) {
	r, err := s.Query(ctx, "SELECT DISTINCT version FROM "+store.Table(db, schema.SchemaMigrations))
	if err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", schema.SchemaMigrations, err)
	}
	done := map[int]bool{}
	for _, row := range r.Rows {
		if v, ok := row[0].(uint64); ok {
			done[int(v)] = true
		}
	}
	return done, nil
}

// Pending returns the versions this binary ships that the database has not applied, in order. A
// writer started against such a database would insert columns its tables lack.
func Pending(ctx context.Context, s store.Store) ([]int, error) {
	ms, err := Load(s.Database())
	if err != nil {
		return nil, err
	}
	done, err := Applied(ctx, s)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, m := range ms {
		if !done[m.Version] {
			out = append(out, m.Version)
		}
	}
	return out, nil
}

// Retention sets how long raw samples and events are kept (the migrations' defaults are 30 and
// 180 days). Zero leaves a table's TTL as it is. ClickHouse applies a new TTL as parts merge.
type Retention struct {
	SamplesDays, EventsDays int
}

// SetRetention applies r to the raw tables where ApplyWith with the same opts created them: the
// store's database, or the shard database (opts.Until is not used).
func SetRetention(ctx context.Context, s store.Store, r Retention, opts Options) error {
	db, err := opts.tablesDatabase(s)
	if err != nil {
		return err
	}
	on := ""
	if opts.Cluster != "" {
		on = " ON CLUSTER " + store.QuoteString(opts.Cluster)
	}
	for _, t := range []struct {
		table string
		days  int
	}{{schema.GPUSamples, r.SamplesDays}, {schema.GPUEvents, r.EventsDays}} {
		if t.days == 0 {
			continue
		}
		if t.days < 1 || t.days > 100*365 {
			return fmt.Errorf("migrate: retention of %s: %d days is out of range", t.table, t.days)
		}
		stmt := fmt.Sprintf("ALTER TABLE %s%s MODIFY TTL toDateTime(time) + INTERVAL %d DAY", store.Table(db, t.table), on, t.days)
		if err := s.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("migrate: retention of %s: %w", t.table, err)
		}
	}
	return nil
}
