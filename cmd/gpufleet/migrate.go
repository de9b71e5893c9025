//go:build !agentonly

package main

import (
	"cmp"
	"context"
	"fmt"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
)

// migrateCmd is `gpufleet migrate`.
type migrateCmd struct {
	sf      storeFlags
	cluster string
	shardDB string
	ret     migrate.Retention
	to      int
}

func runMigrate(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "migrate", "Creates or upgrades the gpufleet schema in ClickHouse. Safe to run any number of times.\n"+
		"With --on-cluster, everything is created ON CLUSTER with Replicated engines. With --shard-database\n"+
		"as well, the tables go into that database on every shard and the --clickhouse database gets\n"+
		"Distributed tables over them for the read paths (docs/cluster.md).")
	var c migrateCmd
	c.sf.register(f)
	f.IntVar(&c.to, "to", 0, "stop after this migration version (an upgrade in steps); 0 applies all")
	f.IntVar(&c.ret.SamplesDays, "samples-days", 0, "keep raw samples this many days (0 leaves the TTL as it is; new schemas keep 30)")
	f.IntVar(&c.ret.EventsDays, "events-days", 0, "keep GPU events this many days (0 leaves the TTL as it is; new schemas keep 180)")
	f.StringVar(&c.cluster, "on-cluster", "", "ClickHouse cluster (remote_servers) to create the schema on, with Replicated engines")
	f.StringVar(&c.shardDB, "shard-database", "", "with --on-cluster: shard the schema, its tables in this database on every shard (ingest writes there)")
	if err := f.parse(args); err != nil {
		return err
	}
	if c.cluster != "" {
		if err := store.CheckIdent("--on-cluster", c.cluster); err != nil {
			return usageError{err}
		}
	}
	if c.shardDB != "" {
		if c.cluster == "" {
			return usageError{fmt.Errorf("--shard-database %s: needs --on-cluster", c.shardDB)}
		}
		if err := store.CheckIdent("--shard-database", c.shardDB); err != nil {
			return usageError{err}
		}
	}
	if c.to < 0 || c.to > migrate.Latest() {
		return usageError{fmt.Errorf("--to %d: must be 1..%d, or 0 for all", c.to, migrate.Latest())}
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	st, err := c.sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := migrate.ApplyWith(ctx, st, log, migrate.Options{Cluster: c.cluster, ShardDatabase: c.shardDB, Until: c.to})
	if err != nil {
		return err
	}
	if err := migrate.SetRetention(ctx, st, c.ret, migrate.Options{Cluster: c.cluster, ShardDatabase: c.shardDB}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "schema at version %d (applied now: %v)\n", cmp.Or(c.to, migrate.Latest()), applied)
	return nil
}
